//! End-to-end tests of `samizdat vault`: the commands, 100 forced kills during writes, and the
//! statistical indistinguishability of containers holding 0, 1 and 7 hidden volumes (with the
//! `ent` tool, which must be installed: `apt-get install -y ent`).
#![allow(clippy::unwrap_used, clippy::expect_used)]
// Real processes, real time: calibrating kill moments needs the clock.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use samizdat_vault::{BLOCK_SIZE, Vault};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_samizdat")
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(bin());
    for a in args {
        cmd.arg(a);
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn pwfile(dir: &Path, name: &str, pw: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{pw}\nignored second line\n")).unwrap();
    p
}

/// Deterministic test data (xorshift).
fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

#[test]
fn commands_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("c.vault");
    let pw = pwfile(d, "pw", "correct horse");
    let hpw = pwfile(d, "hpw", "hidden battery");
    let bad = pwfile(d, "bad", "wrong");

    let out = ok(&run(&[
        &"--json",
        &"vault",
        &"create",
        &c,
        &"--size",
        &"8MiB",
        &"--password-file",
        &pw,
    ]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(std::fs::metadata(&c).unwrap().len(), 8 << 20);

    let input = d.join("report.pdf");
    let content = data(1, 1_500_000);
    std::fs::write(&input, &content).unwrap();
    ok(&run(&[&"vault", &"put", &c, &input, &"--password-file", &pw]));
    ok(&run(&[&"vault", &"put", &c, &input, &"--name", &"docs/copy.pdf", &"--password-file", &pw]));

    let out = ok(&run(&[&"--json", &"vault", &"ls", &c, &"--password-file", &pw]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let names: Vec<_> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["docs/copy.pdf", "report.pdf"]);
    assert_eq!(v["files"][1]["size"], 1_500_000);

    let got = d.join("out.pdf");
    ok(&run(&[&"vault", &"get", &c, &"docs/copy.pdf", &"-o", &got, &"--password-file", &pw]));
    assert_eq!(std::fs::read(&got).unwrap(), content);

    ok(&run(&[&"vault", &"mv", &c, &"docs/copy.pdf", &"moved.pdf", &"--password-file", &pw]));
    ok(&run(&[&"vault", &"rm", &c, &"report.pdf", &"--password-file", &pw]));
    let out = ok(&run(&[&"vault", &"ls", &c, &"--password-file", &pw]));
    assert!(out.contains("moved.pdf") && !out.contains("report.pdf"), "{out}");

    // Wrong password: one line, typed message, exit 1, no partial output file.
    let miss = d.join("miss");
    let out = run(&[&"vault", &"get", &c, &"moved.pdf", &"-o", &miss, &"--password-file", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no volume opens with this password"), "{err}");
    assert_eq!(err.trim().lines().count(), 1);
    assert!(!miss.exists());
    let out = run(&[&"--json", &"vault", &"rm", &c, &"nope", &"--password-file", &pw]);
    let v: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["kind"], "vault");
    assert!(v["error"].as_str().unwrap().contains("no file named"));

    // A hidden volume: separate namespace; the decoy does not see it.
    ok(&run(&[
        &"vault",
        &"add-volume",
        &"--replace-hidden",
        &c,
        &"--parent-password-file",
        &pw,
        &"--password-file",
        &hpw,
    ]));
    let secret = d.join("secret.txt");
    std::fs::write(&secret, b"hidden content").unwrap();
    ok(&run(&[&"vault", &"put", &c, &secret, &"--password-file", &hpw]));
    let out = ok(&run(&[&"vault", &"ls", &c, &"--password-file", &hpw]));
    assert_eq!(out.trim().lines().count(), 1);
    assert!(out.contains("secret.txt"));
    let out = ok(&run(&[&"vault", &"ls", &c, &"--password-file", &pw]));
    assert!(!out.contains("secret.txt"));

    // Protected mode: write to the decoy with the hidden volume protected.
    ok(&run(&[
        &"vault",
        &"put",
        &c,
        &input,
        &"--name",
        &"big",
        &"--password-file",
        &pw,
        &"--protect-password-file",
        &hpw,
    ]));
    let got = d.join("secret.out");
    ok(&run(&[&"vault", &"get", &c, &"secret.txt", &"-o", &got, &"--password-file", &hpw]));
    assert_eq!(std::fs::read(&got).unwrap(), b"hidden content");

    // Creating over an existing file is refused.
    let out = run(&[&"vault", &"create", &c, &"--size", &"8MiB", &"--password-file", &pw]);
    assert!(!out.status.success());
    // Bad size.
    let out =
        run(&[&"vault", &"create", &d.join("x"), &"--size", &"12parsecs", &"--password-file", &pw]);
    assert!(!out.status.success());
}

/// 100 forced kills: `samizdat vault put` is SIGKILLed at random moments; after each kill every
/// committed file reads back byte-identical, and the interrupted file is either absent (or
/// still its previous version) or complete.
#[test]
fn hundred_forced_kills_lose_no_committed_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("kill.vault");
    let pw = pwfile(d, "pw", "kill test password");
    ok(&run(&[&"vault", &"create", &c, &"--size", &"96MiB", &"--password-file", &pw]));

    let mut seed = 0x5eed_u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Calibrate: how long opening takes (process start + Argon2id) and how long one put of
    // the largest size takes; kills are aimed at the write phase in between.
    let t = Instant::now();
    ok(&run(&[&"vault", &"ls", &c, &"--password-file", &pw]));
    let open_time = t.elapsed();
    let cal = d.join("cal");
    std::fs::write(&cal, data(0, 8 << 20)).unwrap();
    let t = Instant::now();
    ok(&run(&[&"vault", &"put", &c, &cal, &"--password-file", &pw]));
    let full = t.elapsed();
    let write_phase = full.saturating_sub(open_time).max(Duration::from_millis(10));
    let mut committed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    committed.insert("cal".into(), data(0, 8 << 20));

    let (mut killed, mut completed, mut landed_new) = (0, 0, 0);
    let mut window = write_phase;
    for i in 0..100u64 {
        // Up to 8 names, so that kills also hit replacements of committed files.
        let name = format!("f{}", rnd() % 8);
        let len = (rnd() % (8 << 20)) as usize + 1;
        let content = data(1000 + i, len);
        let input = d.join("input");
        std::fs::write(&input, &content).unwrap();
        let mut child = Command::new(bin())
            .args(["vault", "put"])
            .arg(&c)
            .arg(&input)
            .arg("--name")
            .arg(&name)
            .arg("--password-file")
            .arg(&pw)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the process starts writing to the container (its mtime changes), then
        // kill it at a random moment within the expected write phase (a little beyond it, so
        // that some kills land after the commit). Robust against a loaded machine: the unlock
        // may take any time, the kill still lands among the writes.
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let before = mtime(&c);
        let waited = Instant::now();
        while mtime(&c) == before
            && child.try_wait().unwrap().is_none()
            && waited.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_micros(300));
        }
        // The aim adapts: a put that finished before its kill shrinks the window, a kill that
        // landed widens it a little, so most kills land mid-write however fast the machine is.
        let frac = (rnd() % 1000) as f64 / 1000.0;
        let size_frac = (len as f64 / (8 << 20) as f64).max(0.05);
        std::thread::sleep(window.mul_f64(1.2 * frac * size_frac));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        window = if status.success() {
            window.mul_f64(0.7)
        } else {
            window.mul_f64(1.1).min(write_phase * 4)
        };
        let previous = committed.get(&name).cloned();
        if status.success() {
            completed += 1;
            committed.insert(name.clone(), content.clone());
        } else {
            killed += 1;
        }

        // Verify every committed file through the library.
        let vault = Vault::open(&c, b"kill test password").unwrap();
        let listed: Vec<String> = vault.list().unwrap().into_iter().map(|f| f.name).collect();
        for n in &listed {
            assert!(committed.contains_key(n) || *n == name, "iteration {i}: unexpected file {n}");
        }
        for (n, expected) in &committed {
            let got = vault.get_bytes(n);
            if *n == name && !status.success() {
                // Interrupted: either the old version (or absent) or the complete new one.
                match got {
                    Ok(g) if g == content => {}
                    Ok(g) => assert_eq!(Some(&g), previous.as_ref(), "iteration {i}: {n} torn"),
                    Err(e) => panic!("iteration {i}: {n}: {e}"),
                }
            } else {
                assert_eq!(&got.unwrap(), expected, "iteration {i}: committed {n} changed");
            }
        }
        if !status.success() {
            match vault.get_bytes(&name) {
                Ok(g) if g == content => {
                    landed_new += 1;
                    committed.insert(name.clone(), content);
                }
                Ok(_) => {}
                Err(samizdat_vault::VaultError::NotFound { .. }) => {
                    assert!(previous.is_none(), "iteration {i}: {name} vanished");
                }
                Err(e) => panic!("iteration {i}: {name}: {e}"),
            }
        }
        vault.verify().unwrap();
    }
    eprintln!(
        "forced kills: {killed} killed mid-run ({landed_new} of them after the commit), \
         {completed} completed before the kill; open {open_time:?}, write phase {write_phase:?}"
    );
    assert!(killed >= 50, "only {killed} of 100 puts were killed mid-run");
}

// ---------------------------------------------------------------------------------------------
// Statistics

/// Standard normal upper tail.
fn normal_sf(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Complementary error function (Numerical Recipes erfcc, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Upper-tail p-value of a chi-square statistic with `k` degrees of freedom (Wilson–Hilferty).
fn chi2_sf(x: f64, k: f64) -> f64 {
    let a = 2.0 / (9.0 * k);
    let z = ((x / k).powf(1.0 / 3.0) - (1.0 - a)) / a.sqrt();
    normal_sf(z)
}

/// Two-sample Kolmogorov–Smirnov test; returns the asymptotic p-value.
fn ks_p(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(|x, y| x.total_cmp(y));
    b.sort_by(|x, y| x.total_cmp(y));
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut dmax) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        dmax = dmax.max((i as f64 / n - j as f64 / m).abs());
    }
    let ne = (n * m / (n + m)).sqrt();
    let lambda = (ne + 0.12 + 0.11 / ne) * dmax;
    let mut p = 0.0;
    for k in 1..100 {
        let k = k as f64;
        let sign = if k as i64 % 2 == 1 { 1.0 } else { -1.0 };
        p += sign * 2.0 * (-2.0 * k * k * lambda * lambda).exp();
    }
    p.clamp(0.0, 1.0)
}

/// Per-block statistics: chi-square of byte frequencies and Shannon entropy.
fn block_stats(bytes: &[u8]) -> (Vec<f64>, Vec<f64>, [u64; 256]) {
    let mut chis = Vec::new();
    let mut ents = Vec::new();
    let mut total = [0u64; 256];
    for block in bytes.chunks_exact(BLOCK_SIZE) {
        let mut counts = [0u64; 256];
        for &b in block {
            counts[b as usize] += 1;
        }
        let e = block.len() as f64 / 256.0;
        chis.push(counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum());
        ents.push(
            -counts
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| {
                    let p = c as f64 / block.len() as f64;
                    p * p.log2()
                })
                .sum::<f64>(),
        );
        for (t, c) in total.iter_mut().zip(counts) {
            *t += c;
        }
    }
    (chis, ents, total)
}

/// Runs `ent` on a file: (entropy bits per byte, chi-square p-value).
fn ent(path: &Path) -> (f64, f64) {
    let out = match Command::new("ent").arg(path).output() {
        Ok(o) => o,
        Err(e) => panic!(
            "the `ent` tool is required for this test but could not be run ({e}); \
             install it with `apt-get install -y ent`"
        ),
    };
    assert!(out.status.success(), "ent failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let entropy: f64 = text
        .split("Entropy = ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse ent output:\n{text}"));
    let percent = text
        .split("would exceed this value ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("cannot parse ent output:\n{text}"));
    // ent prints "less than 0.01" / "greater than 99.99" at the extremes.
    let p = match percent {
        "less" => 0.0,
        "greater" => 1.0,
        v => v.parse::<f64>().unwrap() / 100.0,
    };
    (entropy, p)
}

/// Builds a 64 MiB container with `hidden` hidden volumes, each volume holding files.
fn build(dir: &Path, label: &str, hidden: usize, marker: &str) -> PathBuf {
    let c = dir.join(format!("{label}.vault"));
    let _ = std::fs::remove_file(&c);
    let pws: Vec<PathBuf> = (0..=hidden)
        .map(|i| pwfile(dir, &format!("{label}-pw{i}"), &format!("{label} password {i}")))
        .collect();
    ok(&run(&[&"vault", &"create", &c, &"--size", &"64MiB", &"--password-file", &pws[0]]));
    for i in 1..=hidden {
        ok(&run(&[
            &"vault",
            &"add-volume",
            &"--replace-hidden",
            &c,
            &"--parent-password-file",
            &pws[i - 1],
            &"--password-file",
            &pws[i],
        ]));
    }
    // Plain text with recognisable names and content in every volume (4 MiB per container,
    // split over its volumes, plus a few MiB of random-looking content).
    for (i, pw) in pws.iter().enumerate() {
        let name = format!("{marker}-{label}-volume{i}.txt");
        let text = format!("{marker} plaintext line of volume {i}. ").repeat(40_000 / (hidden + 1));
        let f = dir.join(&name);
        std::fs::write(&f, text.as_bytes()).unwrap();
        ok(&run(&[&"vault", &"put", &c, &f, &"--password-file", pw]));
        let bin = dir.join(format!("{label}-bin{i}"));
        std::fs::write(&bin, data(i as u64, (12 << 20) / (hidden + 1))).unwrap();
        ok(&run(&[&"vault", &"put", &c, &bin, &"--name", &"random.bin", &"--password-file", pw]));
    }
    c
}

#[test]
fn containers_with_0_1_7_hidden_volumes_look_random_and_alike() {
    // Fail early and clearly if ent is missing.
    if Command::new("ent").arg("-u").output().is_err() {
        panic!(
            "the `ent` tool is required for this test; install it with `apt-get install -y ent`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let marker = "SZMARKER";
    let mut stats = Vec::new();
    for (label, hidden) in [("h0", 0usize), ("h1", 1), ("h7", 7)] {
        let mut c = build(d, label, hidden, marker);
        let (mut entropy, mut p) = ent(&c);
        // For truly random data p falls outside the range 2% of the time, so a fresh container
        // (new keys, new random fill) is built up to twice more: three misses in a row happen
        // to random data once in 125,000 runs, while a biased container misses every time.
        for _ in 0..2 {
            if (0.01..=0.99).contains(&p) {
                break;
            }
            eprintln!("{label}: chi-square p = {p}, outside [0.01, 0.99]; rebuilding");
            c = build(d, label, hidden, marker);
            (entropy, p) = ent(&c);
        }
        eprintln!("{label}: ent entropy {entropy} bits/byte, chi-square p = {p}");
        assert!(entropy >= 7.9999, "{label}: entropy {entropy} < 7.9999");
        assert!((0.01..=0.99).contains(&p), "{label}: chi-square p-value {p} outside [0.01, 0.99]");

        let bytes = std::fs::read(&c).unwrap();
        assert_eq!(bytes.len(), 64 << 20);
        for needle in [marker.as_bytes(), b"plaintext line", b"random.bin", b"volume0"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{label}: {:?} appears in the container",
                String::from_utf8_lossy(needle)
            );
        }
        let rnd = data(0, 64);
        assert!(!bytes.windows(64).any(|w| w == rnd), "{label}: file content in clear");
        let st = block_stats(&bytes);
        let flagged = flagged_blocks(&st.0);
        eprintln!("{label}: {flagged} of {} blocks with per-block chi-square p < 1e-5", st.0.len());
        assert!(flagged <= 1, "{label}: {flagged} blocks are far from uniform");
        stats.push((label, st));
    }

    // Block-by-block comparison: distributions of per-block chi-square and entropy, and the
    // overall byte histograms, must not differ significantly between any two containers.
    // 9 tests in all: Bonferroni-corrected, family-wise level 0.001 (so that random
    // containers fail this test about once in a thousand runs).
    let alpha = 0.001 / 9.0;
    for a in 0..stats.len() {
        for b in a + 1..stats.len() {
            let (la, (chi_a, ent_a, tot_a)) = &stats[a];
            let (lb, (chi_b, ent_b, tot_b)) = &stats[b];
            let p_chi = ks_p(chi_a.clone(), chi_b.clone());
            let p_ent = ks_p(ent_a.clone(), ent_b.clone());
            // Chi-square test of homogeneity of the two byte histograms (255 df).
            let (na, nb) = (tot_a.iter().sum::<u64>() as f64, tot_b.iter().sum::<u64>() as f64);
            let mut x = 0.0;
            for v in 0..256 {
                let col = (tot_a[v] + tot_b[v]) as f64;
                for (obs, n) in [(tot_a[v] as f64, na), (tot_b[v] as f64, nb)] {
                    let e = col * n / (na + nb);
                    x += (obs - e).powi(2) / e;
                }
            }
            let p_hist = chi2_sf(x, 255.0);
            eprintln!(
                "{la} vs {lb}: KS per-block chi-square p = {p_chi:.3}, KS per-block entropy p = {p_ent:.3}, byte histogram homogeneity p = {p_hist:.3}"
            );
            for (what, p) in [
                ("per-block chi-square", p_chi),
                ("per-block entropy", p_ent),
                ("byte histogram", p_hist),
            ] {
                assert!(p > alpha, "{la} vs {lb}: {what} distributions differ (p = {p})");
            }
        }
    }
    // The statistics themselves must be able to see structure. (a) A few blocks of plain text
    // are flagged by the per-block test; (b) a slight bias in every block (0.2% of the bytes
    // zeroed) is flagged by the KS comparisons.
    let (chi_r, ent_r, _) = &stats[0].1;
    let mut skewed = data(9, 64 << 20);
    for (i, b) in skewed[..16 * BLOCK_SIZE].iter_mut().enumerate() {
        *b = b"plain text "[i % 11];
    }
    assert!(flagged_blocks(&block_stats(&skewed).0) >= 16);
    let mut biased = data(10, 64 << 20);
    for b in biased.iter_mut().step_by(500) {
        *b = 0;
    }
    let (chi_b, ent_b, _) = block_stats(&biased);
    assert!(ks_p(chi_r.clone(), chi_b) < alpha, "KS misses a biased container");
    assert!(ks_p(ent_r.clone(), ent_b) < alpha, "KS misses a biased container");
}

/// Blocks whose byte distribution is wildly non-uniform (per-block chi-square p < 1e-5; a
/// random 64 MiB container has one with probability 1%).
fn flagged_blocks(chis: &[f64]) -> usize {
    chis.iter().filter(|&&x| chi2_sf(x, 255.0) < 1e-5).count()
}

#[test]
fn statistics_helpers_are_sane() {
    assert!((chi2_sf(255.0, 255.0) - 0.49).abs() < 0.02);
    assert!(chi2_sf(330.0, 255.0) < 0.01);
    let a: Vec<f64> = (0..1000).map(|i| i as f64).collect();
    let b: Vec<f64> = (0..1000).map(|i| i as f64 + 0.5).collect();
    assert!(ks_p(a.clone(), b) > 0.5);
    let c: Vec<f64> = (0..1000).map(|i| i as f64 + 300.0).collect();
    assert!(ks_p(a, c) < 1e-6);
}

/// Runs `samizdat vault put C FILE --password-file PW EXTRA…` as a child process.
fn spawn_put(c: &Path, file: &Path, pw: &Path, extra: &[&str]) -> std::process::Child {
    Command::new(bin())
        .args(["--json", "vault", "put"])
        .arg(c)
        .arg(file)
        .arg("--password-file")
        .arg(pw)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The names `vault ls` lists.
fn listed(c: &Path, pw: &Path) -> Vec<String> {
    let out = ok(&run(&[&"--json", &"vault", &"ls", &c, &"--password-file", &pw]));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    v["files"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap().to_owned()).collect()
}

/// Issue 6: two `vault put`s at once both printed "stored", and one file was gone. Now the
/// container takes one writer at a time: a second one is refused cleanly, or waits with
/// --wait, and everything reported stored is readable afterwards.
#[test]
fn concurrent_writers_never_lose_what_was_reported_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("c.vault");
    let pw = pwfile(d, "pw", "one writer at a time");
    ok(&run(&[&"vault", &"create", &c, &"--size", &"96MiB", &"--password-file", &pw]));
    let files: Vec<(PathBuf, Vec<u8>)> = (0..4)
        .map(|i| {
            let f = d.join(format!("in{i}"));
            let content = data(40 + i, 12 << 20);
            std::fs::write(&f, &content).unwrap();
            (f, content)
        })
        .collect();

    // Deterministic: this process holds the container; a put is refused at once, a put with
    // --wait waits, then stores after the holder's own commit.
    let mut holder = Vault::open(&c, b"one writer at a time").unwrap();
    let out = run(&[&"vault", &"put", &c, &files[0].0, &"--password-file", &pw]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let waiting = spawn_put(&c, &files[1].0, &pw, &["--wait"]);
    std::thread::sleep(Duration::from_millis(1500));
    holder.put_bytes("held", b"committed by the holder").unwrap();
    drop(holder);
    let out = waiting.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Racing real processes: whoever is refused says so; whoever says stored is kept.
    let racers: Vec<_> = files[2..].iter().map(|(f, _)| spawn_put(&c, f, &pw, &[])).collect();
    let mut stored = vec!["held".to_owned(), "in1".to_owned()];
    for (child, (f, _)) in racers.into_iter().zip(&files[2..]) {
        let out = child.wait_with_output().unwrap();
        let name = f.file_name().unwrap().to_str().unwrap().to_owned();
        if out.status.success() {
            stored.push(name);
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("in use by another process"), "{err}");
        }
    }
    assert!(stored.len() >= 3, "at least one racer stores");
    // Both racers again, with --wait: both store.
    let racers: Vec<_> =
        files[2..].iter().map(|(f, _)| spawn_put(&c, f, &pw, &["--wait"])).collect();
    for child in racers {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    stored.extend(["in2".to_owned(), "in3".to_owned()]);
    stored.sort();
    stored.dedup();

    let names = listed(&c, &pw);
    assert_eq!(names, stored);
    let v = Vault::open(&c, b"one writer at a time").unwrap();
    v.verify().unwrap();
    for (f, content) in &files[1..] {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(v.get_bytes(name).unwrap() == *content, "{name} differs");
    }
    assert_eq!(v.get_bytes("held").unwrap(), b"committed by the holder");
}

/// Issue 6: `add-volume` given a lower volume's password silently replaced the hidden volume
/// above it. Now it refuses unless --replace-hidden says so, and says why.
#[test]
fn add_volume_refuses_to_replace_what_may_be_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("c.vault");
    let (pw, hpw, other) =
        (pwfile(d, "pw", "decoy"), pwfile(d, "hpw", "hidden"), pwfile(d, "o", "other"));
    ok(&run(&[&"vault", &"create", &c, &"--size", &"4MiB", &"--password-file", &pw]));
    let add = |new: &Path, replace: bool| {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"vault", &"add-volume", &c];
        args.extend([&"--parent-password-file" as &dyn AsRef<std::ffi::OsStr>, &pw]);
        args.extend([&"--password-file" as &dyn AsRef<std::ffi::OsStr>, &new]);
        if replace {
            args.push(&"--replace-hidden");
        }
        run(&args)
    };
    ok(&add(&hpw, true));
    let secret = d.join("secret");
    std::fs::write(&secret, b"hidden content").unwrap();
    ok(&run(&[&"vault", &"put", &c, &secret, &"--password-file", &hpw]));
    let before = std::fs::read(&c).unwrap();

    // The decoy's password again, without --replace-hidden: refused, nothing written.
    let out = add(&other, false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("hidden volume may already exist"), "{err}");
    assert!(err.contains("cannot tell"), "{err}");
    assert!(err.contains("--replace-hidden"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(std::fs::read(&c).unwrap() == before, "the container changed");
    let out = ok(&run(&[&"vault", &"get", &c, &"secret", &"-o", &"-", &"--password-file", &hpw]));
    assert_eq!(out, "hidden content");
}

/// No progress bar when standard error is not a terminal (or with --json): scripts and logs
/// get nothing but the result line.
#[test]
fn large_writes_draw_no_bar_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("c.vault");
    let pw = pwfile(d, "pw", "quiet");
    let out = run(&[&"vault", &"create", &c, &"--size", &"64MiB", &"--password-file", &pw]);
    ok(&out);
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let big = d.join("big");
    std::fs::write(&big, data(7, 20 << 20)).unwrap();
    for json in [false, true] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"vault", &"put", &c, &big];
        args.extend([&"--password-file" as &dyn AsRef<std::ffi::OsStr>, &pw]);
        if json {
            args.insert(0, &"--json");
        }
        let out = run(&args);
        ok(&out);
        assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    }
}

/// On a terminal, `vault create` and `vault put` of a large file draw a progress bar on
/// standard error (run under `script`, which gives the child a pseudo-terminal).
#[test]
fn large_writes_draw_a_bar_on_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: script(1) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let c = d.join("c.vault");
    let pw = pwfile(d, "pw", "on a terminal");
    let big = d.join("big");
    std::fs::write(&big, data(8, 40 << 20)).unwrap();
    let line = format!(
        "{bin} vault create {c} --size 256MiB --password-file {pw} && \
         {bin} vault put {c} {big} --password-file {pw}",
        bin = bin(),
        c = c.display(),
        pw = pw.display(),
        big = big.display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("filling with random bytes"), "no create bar: {text}");
    assert!(text.contains("storing"), "no put bar: {text}");
    assert!(text.contains("stored \"big\""), "{text}");
}
