//! `samizdat demo`: a whole network on loopback in one process.
//!
//! Starts N nodes on `127.0.0.1` (real TCP, real Noise sessions, real files in a temporary
//! directory), shares a generated file from the first node, lets a second node fetch it and
//! keep an encrypted copy, then fetches it on the last node from both at once, interrupting
//! that download midway and resuming it. Checks SHA-256 of the result against the original.

use anyhow::{Context as _, ensure};
use samizdat_node::{Node, NodeBuilder, ShareLink};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

fn say(json: bool, line: impl FnOnce() -> String) {
    if !json {
        println!("{}", line());
    }
}

fn sha256_file(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(h.finalize().into());
        }
        h.update(&buf[..n]);
    }
}

/// Writes `size` pseudo-random bytes (xorshift seeded from the OS) to `path`.
fn generate(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut x = rand_core::RngCore::next_u64(&mut rand_core::OsRng) | 1;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut left = size;
    let mut block = vec![0u8; 1 << 16];
    while left > 0 {
        for chunk in block.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(block.len() as u64) as usize;
        w.write_all(&block[..n])?;
        left -= n as u64;
    }
    w.flush()?;
    Ok(())
}

fn mib(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

pub(crate) async fn run(n: usize, size: u64, json: bool) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = tmp.path();
    let started = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let mut b = NodeBuilder::new()
            .data_dir(dir.join(format!("node{i}")))
            .listen("tcp/127.0.0.1:0")
            .seed_downloads(i == 1);
        if let Some(first) = nodes.first() {
            b = b.peer(first.listen_addrs()[0].to_string());
        }
        nodes.push(b.build().await?);
    }
    let up = nodes[0].wait_for_peers(n - 1, Duration::from_secs(10)).await?;
    say(json, || {
        format!("Started {n} nodes on 127.0.0.1; node 0 has {up} authenticated encrypted sessions.")
    });

    let original = dir.join("original.bin");
    generate(&original, size)?;
    let t = Instant::now();
    let link = nodes[0].share(&original).await?;
    let link_text = link.to_string();
    say(json, || {
        format!(
            "Node 0 encrypted and shared a {size}-byte file in {:.2} s. Link ({} chars): {}…",
            t.elapsed().as_secs_f64(),
            link_text.len(),
            &link_text[..24]
        )
    });

    // Node 1 fetches and keeps an encrypted copy, so the file then has two sources.
    let t = Instant::now();
    let first = nodes[1].fetch(&link, &dir.join("node1.out")).await?.outcome().await?;
    let s1 = t.elapsed().as_secs_f64();
    say(json, || {
        format!(
            "Node 1 fetched it in {s1:.2} s ({:.1} MiB/s) and now seeds it too.",
            mib(first.bytes, s1)
        )
    });

    // The last node fetches from nodes 0 and 1 at once; we interrupt it midway and resume.
    let last = &nodes[n - 1];
    let both =
        ShareLink { peers: nodes[..2].iter().flat_map(|x| x.hints()).collect(), ..link.clone() };
    let out = dir.join("fetched.bin");
    let t = Instant::now();
    let mut fetch = last.fetch(&both, &out).await?;
    let mut interrupted_at = 0;
    while let Some(p) = fetch.progress().await {
        if p.total_bytes.is_some_and(|t| p.verified_bytes * 2 >= t) {
            interrupted_at = p.verified_bytes;
            break;
        }
    }
    drop(fetch);
    // Dropping the fetch cancels it at its next verified group; on a fast machine the last
    // group may already be in, in which case there is nothing left to resume.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (bytes, resumed_bytes) = if out.exists() {
        say(json, || format!("Node {} finished before the interruption took effect.", n - 1));
        (std::fs::metadata(&out)?.len(), 0)
    } else {
        say(json, || {
            format!(
                "Node {} was interrupted after {interrupted_at} verified bytes; resuming…",
                n - 1
            )
        });
        let o = last.fetch(&both, &out).await?.outcome().await?;
        (o.bytes, o.resumed_bytes)
    };
    let seconds = t.elapsed().as_secs_f64();
    let sources = last.peers().await?.iter().filter(|p| p.established).count();

    let matches = sha256_file(&original)? == sha256_file(&out)?;
    ensure!(bytes == size, "fetched {bytes} bytes, expected {size}");
    if json {
        println!(
            "{}",
            json!({
                "ok": matches,
                "sha256_match": matches,
                "bytes": bytes,
                "seconds": seconds,
                "nodes": n,
                "resumed_bytes": resumed_bytes,
                "connected_peers": sources,
                "throughput_mib_s": mib(bytes, seconds),
                "total_seconds": started.elapsed().as_secs_f64(),
            })
        );
    } else {
        println!(
            "Node {} fetched it ({sources} peers connected) in {seconds:.2} s; {} bytes were resumed from disk, not re-downloaded.",
            n - 1,
            resumed_bytes
        );
        println!(
            "SHA-256 of the fetched file {} the original. Every chunk was verified against the link's BLAKE3 root before it was written.",
            if matches { "matches" } else { "DOES NOT match" }
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
    ensure!(matches, "the fetched file differs from the original");
    Ok(())
}
