//! Vault benchmark: sequential write and read of one large file through the vault, against a
//! plain file written and read in the same run; Argon2id unlock time; space overhead.
//!
//! ```text
//! cargo run --release -p samizdat-vault --example vault_bench -- [SIZE_MIB] [RUNS] [DIR]
//! ```
//! Defaults: 1024 MiB, 3 runs, the system temporary directory. Each run writes the file once
//! as a plain file and once into the vault, then reads both back three times, alternating.
//! Figures are medians; CPU times (user + system, all threads) are totals over all runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// A benchmark binary: wall-clock time is what it measures.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use samizdat_vault::{BLOCK_SIZE, PAYLOAD_SIZE, Vault, VaultError};

/// Yields `len` bytes by repeating an 8 MiB pseudo-random pattern.
struct Source {
    pattern: Vec<u8>,
    left: u64,
    pos: usize,
}

impl Source {
    fn new(len: u64) -> Self {
        let mut x = 0x1234_5678_9abc_def1u64;
        let pattern = (0..8 << 20)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Source { pattern, left: len, pos: 0 }
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n =
            (buf.len() as u64).min(self.left).min((self.pattern.len() - self.pos) as u64) as usize;
        buf[..n].copy_from_slice(&self.pattern[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.pattern.len();
        self.left -= n as u64;
        Ok(n)
    }
}

/// Read pairs (plain file, then vault) per run.
const READS: usize = 3;

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// CPU time (user + system) used so far by this process, all its threads included, exited
/// ones too, in seconds (Linux `/proc/self/stat`, in 1/100 s ticks; `None` elsewhere).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces):
    // utime and stime are fields 14 and 15 of the line, i.e. 12 and 13 after the ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The 1, 5 and 15 minute load averages (Linux), for the record.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs `f`, returning its wall-clock time and the process CPU time it used.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, f64) {
    let c = cpu_seconds();
    let t = Instant::now();
    let out = f();
    let d = t.elapsed();
    let cpu = match (c, cpu_seconds()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    (out, d, cpu)
}

fn plain_write(path: &Path, size: u64) -> Duration {
    let t = Instant::now();
    let mut f = File::create(path).unwrap();
    let mut src = Source::new(size);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n]).unwrap();
    }
    f.sync_all().unwrap();
    t.elapsed()
}

fn plain_read(path: &Path) -> Duration {
    let t = Instant::now();
    let mut f = File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut sum = 0u64;
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sum = sum.wrapping_add(u64::from(buf[n - 1]));
    }
    std::hint::black_box(sum);
    t.elapsed()
}

fn main() -> Result<(), VaultError> {
    let args: Vec<String> = std::env::args().collect();
    let size_mib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let base: PathBuf = args.get(3).map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&base).unwrap();
    let size = size_mib << 20;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "vault_bench: file {size_mib} MiB, {runs} runs, {cores} cores, dir {}, load average {}",
        base.display(),
        loadavg()
    );

    let plain = dir.path().join("plain.bin");
    let container = dir.path().join("bench.vault");
    // Container: the file plus 1/16 slack for metadata and free space.
    let container_size = (size + size / 16 + (8 << 20)).next_multiple_of(BLOCK_SIZE as u64);

    let t = Instant::now();
    let mut vault = Vault::create(&container, container_size, b"benchmark password")?;
    let create_time = t.elapsed();
    let free_before = vault.free_space();

    let (mut pw, mut pr, mut vw, mut vr, mut ratio) = (vec![], vec![], vec![], vec![], vec![]);
    // CPU seconds (all threads) summed over every plain read, vault get and vault put: the
    // clock counts in 1/100 s, so totals are more precise than per-run figures.
    let (mut cpu_pw, mut cpu_pr, mut cpu_vr, mut cpu_vw) = (0.0, 0.0, 0.0, 0.0);
    for run in 0..runs {
        let (d, _, cpu) = timed(|| plain_write(&plain, size));
        pw.push(mib_s(size, d));
        cpu_pw += cpu;
        if run > 0 {
            vault.delete("big.bin")?;
        }
        let (n, d, cpu) = timed(|| vault.put("big.bin", Source::new(size)));
        assert_eq!(n?, size);
        vw.push(mib_s(size, d));
        cpu_vw += cpu;
        // Reads are cheap: READS pairs per run, plain and vault alternating, so that each
        // ratio compares two reads made within a fraction of a second of each other.
        for _ in 0..READS {
            let ((), d, cpu) = timed(|| {
                plain_read(&plain);
            });
            pr.push(mib_s(size, d));
            cpu_pr += cpu;
            let (n, d, cpu) = timed(|| vault.get("big.bin", io::sink()));
            assert_eq!(n?, size);
            vr.push(mib_s(size, d));
            cpu_vr += cpu;
            ratio.push(vr[vr.len() - 1] / pr[pr.len() - 1]);
        }
        std::fs::remove_file(&plain).unwrap();
        let reads = &ratio[ratio.len() - READS..];
        println!(
            "run {run}: plain write {:.0} MiB/s, vault put {:.0} MiB/s | reads (plain, vault, \
             ratio): {}",
            pw[run],
            vw[run],
            reads
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let k = run * READS + i;
                    format!("{:.0} {:.0} {r:.2}x", pr[k], vr[k])
                })
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    let gib = size as f64 / f64::from(1u32 << 30);
    let reads_gib = gib * (runs * READS) as f64;
    let (cpu_pr, cpu_vr) = (cpu_pr / reads_gib, cpu_vr / reads_gib);
    let (cpu_pw, cpu_vw) = (cpu_pw / (gib * runs as f64), cpu_vw / (gib * runs as f64));
    let load_after = loadavg();
    let used = free_before - vault.free_space();
    drop(vault);

    let mut unlock = vec![];
    let mut wrong = vec![];
    for _ in 0..3 {
        let t = Instant::now();
        let v = Vault::open(&container, b"benchmark password")?;
        unlock.push(t.elapsed().as_secs_f64());
        drop(v);
        let t = Instant::now();
        let r = Vault::open(&container, b"not the password");
        assert!(matches!(r, Err(VaultError::NoVolume)));
        wrong.push(t.elapsed().as_secs_f64());
    }

    let (pw, pr, vw, vr) = (median(pw), median(pr), median(vw), median(vr));
    let on_disk = used + (used / PAYLOAD_SIZE as u64) * (BLOCK_SIZE - PAYLOAD_SIZE) as u64;
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| file size | {size_mib} MiB |");
    println!("| plain file write (fsync) | {pw:.0} MiB/s |");
    println!("| vault put (fsync, commit) | {vw:.0} MiB/s |");
    println!("| write ratio vault/plain | {:.2}x |", vw / pw);
    println!("| plain file read | {pr:.0} MiB/s |");
    println!("| vault get (authenticated) | {vr:.0} MiB/s |");
    println!("| read ratio vault/plain | {:.2}x |", vr / pr);
    println!("| read ratio, median of the per-pair ratios | {:.2}x |", median(ratio));
    println!("| CPU time, plain read | {cpu_pr:.3} s/GiB |");
    println!("| CPU time, vault get (all threads) | {cpu_vr:.3} s/GiB |");
    println!("| CPU ratio vault get / plain read | {:.2}x |", cpu_vr / cpu_pr);
    println!("| CPU time, plain write | {cpu_pw:.3} s/GiB |");
    println!("| CPU time, vault put (all threads) | {cpu_vw:.3} s/GiB |");
    println!("| unlock (Argon2id 64 MiB t=3 + open) | {:.3} s |", median(unlock));
    println!("| wrong password | {:.3} s |", median(wrong));
    println!(
        "| container creation ({} MiB random fill) | {:.2} s |",
        container_size >> 20,
        create_time.as_secs_f64()
    );
    println!(
        "| space overhead (blocks on disk / file size - 1) | {:.3}% |",
        (on_disk as f64 / size as f64 - 1.0) * 100.0
    );
    println!("| load average after the read/write runs | {load_after} |");
    Ok(())
}
