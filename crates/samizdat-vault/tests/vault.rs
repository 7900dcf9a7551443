//! Library-level tests of the vault: file store, hidden volumes, protected mode, tampering,
//! simulated crashes at every write, secure deletion and hostile containers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use samizdat_vault::{
    BLOCK_SIZE, KdfCost, MAX_VOLUMES, MIN_CONTAINER_SIZE, MemStorage, OpenOptions, PAYLOAD_SIZE,
    Storage, Vault, VaultError,
};

const KDF: KdfCost = KdfCost::DANGER_INSECURE_TEST;

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

fn mem(len: usize) -> Arc<MemStorage> {
    Arc::new(MemStorage::new(len))
}

fn open(disk: &Arc<MemStorage>, pw: &[u8]) -> Result<Vault, VaultError> {
    Vault::open_in(Box::new(disk.clone()), pw, &[], KDF)
}

#[test]
fn file_store_roundtrip() {
    let disk = mem(32 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let big = data(1, 9 * 1024 * 1024 + 12345); // spans several batches, odd tail
    let exact = data(2, PAYLOAD_SIZE * 3);
    v.put("big.bin", &big[..]).unwrap();
    v.put_bytes("exact", &exact).unwrap();
    v.put_bytes("empty", b"").unwrap();
    v.put_bytes("dir/sub/small.txt", b"hello").unwrap();
    // Streaming writer through std::io::Write.
    let mut w = v.create_file("streamed").unwrap();
    for i in 0..100u64 {
        w.write_all(&data(i, 10_000)).unwrap();
    }
    assert_eq!(w.finish().unwrap(), 1_000_000);
    drop(v);

    let mut v = open(&disk, b"pw").unwrap();
    let names: Vec<_> = v.list().unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["big.bin", "dir/sub/small.txt", "empty", "exact", "streamed"]);
    assert_eq!(v.get_bytes("big.bin").unwrap(), big);
    assert_eq!(v.get_bytes("exact").unwrap(), exact);
    assert_eq!(v.get_bytes("empty").unwrap(), b"");
    let streamed: Vec<u8> = (0..100u64).flat_map(|i| data(i, 10_000)).collect();
    assert_eq!(v.get_bytes("streamed").unwrap(), streamed);

    // Seek + Read.
    let mut r = v.open_file("big.bin").unwrap();
    r.seek(SeekFrom::Start(5_000_000)).unwrap();
    let mut buf = vec![0u8; 300_000];
    r.read_exact(&mut buf).unwrap();
    assert_eq!(buf, &big[5_000_000..5_300_000]);
    r.seek(SeekFrom::End(-10)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &big[big.len() - 10..]);
    drop(r);

    // Replace, rename, delete.
    v.put_bytes("exact", b"replaced").unwrap();
    v.rename("dir/sub/small.txt", "moved.txt").unwrap();
    assert!(matches!(v.rename("moved.txt", "exact"), Err(VaultError::AlreadyExists { .. })));
    v.delete("big.bin").unwrap();
    assert!(matches!(v.delete("big.bin"), Err(VaultError::NotFound { .. })));
    assert!(matches!(v.get_bytes("nope"), Err(VaultError::NotFound { .. })));
    assert!(matches!(v.put_bytes("", b"x"), Err(VaultError::InvalidName { .. })));
    drop(v);

    let v = open(&disk, b"pw").unwrap();
    assert_eq!(v.get_bytes("exact").unwrap(), b"replaced");
    assert_eq!(v.get_bytes("moved.txt").unwrap(), b"hello");
    assert_eq!(v.file_size("big.bin").unwrap(), None);
    v.verify().unwrap();
}

#[test]
fn random_seeks_read_what_was_written() {
    let disk = mem(32 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let big = data(11, 20 * 1024 * 1024 + 777); // more than one full batch of 128 blocks
    v.put_bytes("big", &big).unwrap();
    let mut r = v.open_file("big").unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut buf = vec![0u8; 3 * PAYLOAD_SIZE];
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let at = (x % big.len() as u64) as usize;
        let len = ((x >> 40) as usize % buf.len()).min(big.len() - at);
        r.seek(SeekFrom::Start(at as u64)).unwrap();
        r.read_exact(&mut buf[..len]).unwrap();
        assert_eq!(&buf[..len], &big[at..at + len], "at {at} len {len}");
    }
    // A seek past the end reads nothing.
    r.seek(SeekFrom::Start(big.len() as u64 + 5)).unwrap();
    assert_eq!(r.read(&mut buf).unwrap(), 0);
    // Sequential reading after random access (the read window grows again).
    r.seek(SeekFrom::Start(0)).unwrap();
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert!(all == big);
}

/// A writer that fails after `left` bytes.
struct FailingWriter {
    left: usize,
}

impl Write for FailingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Err(io::Error::other("disk full"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn streaming_get_reports_errors_and_stops() {
    let disk = mem(32 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let before = disk.to_bytes();
    let content = data(13, 10 << 20); // 161 blocks: more than the read-ahead ring
    v.put_bytes("f", &content).unwrap();
    drop(v);
    let v = open(&disk, b"pw").unwrap();
    assert!(v.get_bytes("f").unwrap() == content);

    // The output fails part-way: the error comes back, and no worker is left running.
    let err = v.get("f", FailingWriter { left: 3 << 20 }).unwrap_err();
    assert!(matches!(err, VaultError::Io { .. }), "{err:?}");
    drop(v);

    // A tampered block deep in the file: every get fails with Corrupt, from every position.
    let after = disk.to_bytes();
    let changed: Vec<usize> = (1..after.len() / BLOCK_SIZE)
        .filter(|&b| {
            before[b * BLOCK_SIZE..(b + 1) * BLOCK_SIZE]
                != after[b * BLOCK_SIZE..(b + 1) * BLOCK_SIZE]
        })
        .collect();
    let mut tested = 0;
    for &b in changed.iter().step_by(changed.len() / 8) {
        let mut bytes = after.clone();
        bytes[b * BLOCK_SIZE + 1000] ^= 0x40;
        let tampered = Arc::new(MemStorage::from_bytes(bytes));
        let v = open(&tampered, b"pw").unwrap();
        // A copy of the catalog: another copy is read, and the file is intact.
        if let Ok(bytes) = v.get_bytes("f") {
            assert!(bytes == content, "block {b}: garbage read");
            continue;
        }
        let err = v.get("f", io::sink()).unwrap_err();
        assert!(matches!(err, VaultError::Corrupt { .. }), "block {b}: {err:?}");
        assert!(matches!(v.verify(), Err(VaultError::Corrupt { .. })));
        tested += 1;
    }
    assert!(tested >= 6, "only {tested} content blocks tampered");
}

/// Storage whose `fail_at`-th write (counting from 1) fails once; the others succeed.
struct FlakyStorage {
    inner: Arc<MemStorage>,
    fail_at: AtomicI64,
}

impl Storage for FlakyStorage {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if self.fail_at.fetch_sub(1, Ordering::SeqCst) == 1 {
            return Err(io::Error::other("transient write error"));
        }
        self.inner.write_at(offset, buf)
    }
    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_batch_poisons_the_writer_not_the_vault() {
    let disk = mem(32 << 20);
    drop(Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap());
    // Fail the 150th block write: inside the second batch (of 128 blocks) of a 20 MiB file.
    let flaky = Arc::new(FlakyStorage { inner: disk.clone(), fail_at: AtomicI64::new(150) });
    let mut v = Vault::open_in(Box::new(flaky), b"pw", &[], KDF).unwrap();
    let free = v.free_space();
    let content = data(12, 20 << 20);
    let mut w = v.create_file("f").unwrap();
    let err = w.write_bytes(&content).unwrap_err();
    assert!(matches!(err, VaultError::Io { .. }), "{err:?}");
    // The half-sealed batch must never be retried or committed.
    assert!(matches!(w.write_bytes(b"more"), Err(VaultError::Poisoned)));
    assert!(matches!(w.finish(), Err(VaultError::Poisoned)));
    assert_eq!(v.free_space(), free, "every block of the failed file is free again");
    assert_eq!(v.file_size("f").unwrap(), None);
    // The vault itself still works.
    v.put_bytes("f", &content).unwrap();
    assert!(v.get_bytes("f").unwrap() == content);
    drop(v);
    assert!(open(&disk, b"pw").unwrap().get_bytes("f").unwrap() == content);
}

#[test]
fn dropped_writer_leaves_nothing_and_frees_space() {
    let disk = mem(8 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let free = v.free_space();
    {
        let mut w = v.create_file("partial").unwrap();
        w.write_bytes(&data(3, 5 << 20)).unwrap();
    }
    assert_eq!(v.free_space(), free);
    assert!(v.list().unwrap().is_empty());
    // Full: a file larger than the container.
    let err = v.put("huge", &data(4, 9 << 20)[..]).unwrap_err();
    assert!(matches!(err, VaultError::Full), "{err:?}");
    assert_eq!(v.free_space(), free);
    v.put_bytes("fits", &data(5, 1 << 20)).unwrap();
}

#[test]
fn hidden_volumes_nest_and_stay_separate() {
    let disk = mem(24 << 20);
    let pws: Vec<Vec<u8>> = (0..8).map(|i| format!("password {i}").into_bytes()).collect();
    let mut v = Vault::create_in(Box::new(disk.clone()), &pws[0], KDF).unwrap();
    v.put_bytes("vol0", &data(100, 700_000)).unwrap();
    drop(v);
    for i in 1..8 {
        let mut v =
            Vault::add_volume_in(Box::new(disk.clone()), &pws[i - 1], &pws[i], KDF).unwrap();
        assert!(v.list().unwrap().is_empty());
        v.put_bytes(&format!("vol{i}"), &data(100 + i as u64, 700_000)).unwrap();
    }
    // Writing a lot to the most hidden volume never clobbers the ones below it.
    let mut top = open(&disk, &pws[7]).unwrap();
    for k in 0..10 {
        top.put_bytes(&format!("fill{k}"), &data(k, 1 << 20)).unwrap();
    }
    drop(top);
    for (i, pw) in pws.iter().enumerate() {
        let v = open(&disk, pw).unwrap();
        let names: Vec<_> = v.list().unwrap().into_iter().map(|f| f.name).collect();
        let own = format!("vol{i}");
        assert!(names.contains(&own), "volume {i} lists {names:?}");
        assert_eq!(v.get_bytes(&own).unwrap(), data(100 + i as u64, 700_000));
        for j in 0..8 {
            if j != i {
                assert!(!names.contains(&format!("vol{j}")));
            }
        }
        v.verify().unwrap();
    }
    assert!(matches!(open(&disk, b"wrong"), Err(VaultError::NoVolume)));
    assert!(matches!(
        Vault::add_volume_in(Box::new(disk.clone()), &pws[7], &pws[3], KDF),
        Err(VaultError::PasswordInUse)
    ));
}

#[test]
fn at_most_max_volumes() {
    let disk = mem(2 << 20);
    Vault::create_in(Box::new(disk.clone()), b"p0", KDF).unwrap();
    for i in 1..MAX_VOLUMES {
        let parent = format!("p{}", i - 1);
        let new = format!("p{i}");
        Vault::add_volume_in(Box::new(disk.clone()), parent.as_bytes(), new.as_bytes(), KDF)
            .unwrap();
    }
    let last = format!("p{}", MAX_VOLUMES - 1);
    assert!(matches!(
        Vault::add_volume_in(Box::new(disk.clone()), last.as_bytes(), b"one more", KDF),
        Err(VaultError::NoFreeSlot { .. })
    ));
    for i in 0..MAX_VOLUMES {
        open(&disk, format!("p{i}").as_bytes()).unwrap();
    }
}

#[test]
fn protected_mode_keeps_hidden_data_and_decoy_alone_may_not() {
    // Small container: filling the decoy alone must eventually reuse hidden blocks.
    let disk = mem(4 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"decoy", KDF).unwrap();
    v.put_bytes("d", b"decoy data").unwrap();
    drop(v);
    let mut h = Vault::add_volume_in(Box::new(disk.clone()), b"decoy", b"hidden", KDF).unwrap();
    let secret = data(9, 20 * PAYLOAD_SIZE);
    h.put_bytes("secret", &secret).unwrap();
    drop(h);
    let snapshot = disk.to_bytes();

    // Protected mode: fill everything the decoy may take, hidden data survives.
    let mut p =
        Vault::open_in(Box::new(disk.clone()), b"decoy", &[b"hidden".as_slice()], KDF).unwrap();
    let room = p.free_space() as usize;
    // 63 data blocks - hidden (20 content + 2 catalog copies) - decoy (1 + 2).
    assert_eq!(room / PAYLOAD_SIZE, 38, "hidden blocks must count as used");
    p.put_bytes("fill", &data(10, room - 2 * PAYLOAD_SIZE)).unwrap();
    drop(p);
    let h = open(&disk, b"hidden").unwrap();
    assert_eq!(h.get_bytes("secret").unwrap(), secret);
    assert_eq!(h.get_bytes("d").err().map(|_| ()), Some(()));

    // Decoy alone: the same fill overwrites hidden blocks; reading them is an error, never
    // garbage, and the decoy stays fine.
    let disk2 = Arc::new(MemStorage::from_bytes(snapshot));
    let mut d = open(&disk2, b"decoy").unwrap();
    let room = d.free_space() as usize;
    d.put_bytes("fill", &data(10, room - 2 * PAYLOAD_SIZE)).unwrap();
    drop(d);
    // The hidden catalog or content was overwritten: opening or reading it is an error.
    let hidden = open(&disk2, b"hidden").and_then(|h| h.get_bytes("secret"));
    assert!(matches!(hidden, Err(VaultError::Corrupt { .. })), "{hidden:?}");
    let d = open(&disk2, b"decoy").unwrap();
    assert_eq!(d.get_bytes("d").unwrap(), b"decoy data");
}

#[test]
fn wrong_password_and_hostile_containers_are_typed_errors() {
    // Random bytes.
    let rnd = Arc::new(MemStorage::from_bytes(data(77, 2 << 20)));
    assert!(matches!(open(&rnd, b"pw"), Err(VaultError::NoVolume)));
    // Too small.
    let small = Arc::new(MemStorage::from_bytes(data(78, 100)));
    assert!(matches!(open(&small, b"pw"), Err(VaultError::TooSmall { .. })));
    // Truncated: header intact, data area cut.
    let disk = mem(4 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    v.put_bytes("f", &data(1, 2 << 20)).unwrap();
    drop(v);
    let mut bytes = disk.to_bytes();
    bytes.truncate(1 << 20);
    let cut = Arc::new(MemStorage::from_bytes(bytes));
    match open(&cut, b"pw") {
        Err(VaultError::Corrupt { .. }) => {}
        Ok(v) => assert!(v.get_bytes("f").is_err()),
        Err(e) => panic!("unexpected {e:?}"),
    }
    assert!(matches!(
        Vault::create_in(Box::new(mem(4 << 20)), b"", KDF),
        Err(VaultError::EmptyPassword)
    ));
}

#[test]
fn every_tampered_block_is_detected() {
    let disk = mem(2 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let content = data(5, 5 * PAYLOAD_SIZE + 17);
    v.put_bytes("a", &content).unwrap();
    v.put_bytes("b", b"short").unwrap();
    drop(v);
    let clean = disk.to_bytes();
    let nblocks = clean.len() / BLOCK_SIZE;
    let mut detected = 0;
    for block in 0..nblocks {
        for &off in &[3usize, 100, BLOCK_SIZE / 2, BLOCK_SIZE - 1] {
            let mut bytes = clean.clone();
            // In the header block, hit the active slot (slot 0 at 4096..8192) too.
            let at = if block == 0 { 4096 + off % 4096 } else { block * BLOCK_SIZE + off };
            bytes[at] ^= 0x40;
            let d = Arc::new(MemStorage::from_bytes(bytes));
            let outcome = open(&d, b"pw").and_then(|v| {
                let a = v.get_bytes("a")?;
                let b = v.get_bytes("b")?;
                Ok((a, b))
            });
            match outcome {
                Ok((a, b)) => {
                    assert_eq!(a, content, "garbage read after tampering block {block}");
                    assert_eq!(b, b"short");
                }
                Err(VaultError::Corrupt { .. }) | Err(VaultError::NoVolume) => detected += 1,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
    }
    // 6 + 1 content blocks, 4 flips each, plus the header slot. A tampered copy of a
    // catalog block is detected too, and the other copy is read instead.
    assert!(detected >= 7 * 4, "only {detected} tamperings detected");
}

/// Storage that stops writing after a budget of writes (simulated crash); the last write may
/// be torn in half.
struct CrashingStorage {
    inner: Arc<MemStorage>,
    budget: AtomicI64,
    torn: bool,
    log: Mutex<()>,
}

impl Storage for CrashingStorage {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let _g = self.log.lock().unwrap();
        let left = self.budget.fetch_sub(1, Ordering::SeqCst);
        if left > 0 {
            self.inner.write_at(offset, buf)
        } else {
            if left == 0 && self.torn {
                self.inner.write_at(offset, &buf[..buf.len() / 2])?;
            }
            Err(io::Error::other("simulated crash"))
        }
    }
    fn sync(&self) -> io::Result<()> {
        if self.budget.load(Ordering::SeqCst) > 0 {
            Ok(())
        } else {
            Err(io::Error::other("simulated crash"))
        }
    }
}

#[test]
fn crash_at_every_write_keeps_last_commit() {
    let disk = mem(4 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let old = data(1, 3 * PAYLOAD_SIZE);
    v.put_bytes("keep", b"kept").unwrap();
    v.put_bytes("f", &old).unwrap();
    drop(v);
    let base = disk.to_bytes();
    let new = data(2, 2 * PAYLOAD_SIZE + 5);
    type Op = fn(&mut Vault, &[u8]) -> Result<(), VaultError>;
    let ops: [(&str, Op); 4] = [
        ("replace", |v, new| v.put_bytes("f", new)),
        ("delete", |v, _| v.delete("f")),
        ("rename", |v, _| v.rename("f", "g")),
        ("new", |v, new| v.put_bytes("n", new)),
    ];
    for (label, op) in ops {
        for torn in [false, true] {
            let mut budget = 0;
            loop {
                let inner = Arc::new(MemStorage::from_bytes(base.clone()));
                let crashing = CrashingStorage {
                    inner: inner.clone(),
                    budget: AtomicI64::new(i64::MAX),
                    torn,
                    log: Mutex::new(()),
                };
                let crashing = Arc::new(crashing);
                let mut v = Vault::open_in(Box::new(crashing.clone()), b"pw", &[], KDF).unwrap();
                crashing.budget.store(budget, Ordering::SeqCst);
                let finished = op(&mut v, &new).is_ok();
                drop(v);
                let after = open(&inner, b"pw").unwrap();
                assert_eq!(after.get_bytes("keep").unwrap(), b"kept");
                let files: BTreeMap<String, Vec<u8>> = after
                    .list()
                    .unwrap()
                    .into_iter()
                    .map(|f| (f.name.clone(), after.get_bytes(&f.name).unwrap()))
                    .collect();
                let old_state = files.get("f") == Some(&old) && files.len() == 2;
                let new_state = match label {
                    "replace" => files.get("f") == Some(&new) && files.len() == 2,
                    "delete" => !files.contains_key("f") && files.len() == 1,
                    "rename" => files.get("g") == Some(&old) && files.len() == 2,
                    _ => files.get("n") == Some(&new) && files.len() == 3,
                };
                assert!(
                    old_state || new_state,
                    "{label} torn={torn} budget={budget}: neither old nor new state"
                );
                if finished {
                    assert!(new_state, "{label}: finished but new state missing");
                    break;
                }
                budget += 1;
            }
            assert!(budget > 2, "{label}: the operation should take several writes");
        }
    }
}

#[test]
fn delete_overwrites_blocks_and_leaves_no_plaintext() {
    let disk = mem(4 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let marker = b"SAMIZDAT-PLAINTEXT-MARKER-0123456789".repeat(3000);
    v.put_bytes("very-secret-file-name.txt", &marker).unwrap();
    let before = disk.to_bytes();
    for needle in [&b"SAMIZDAT-PLAINTEXT-MARKER"[..], b"very-secret-file-name"] {
        assert!(!before.windows(needle.len()).any(|w| w == needle));
    }
    v.delete("very-secret-file-name.txt").unwrap();
    let after = disk.to_bytes();
    let changed =
        before.chunks(BLOCK_SIZE).zip(after.chunks(BLOCK_SIZE)).filter(|(a, b)| a != b).count();
    // 2 content blocks + old catalog + new catalog + header.
    assert!(changed >= 5, "only {changed} blocks changed on delete");
}

#[test]
fn randomized_operations_match_a_model() {
    let disk = mem(8 << 20);
    let mut v = Vault::create_in(Box::new(disk.clone()), b"pw", KDF).unwrap();
    let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut x = 12345u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for step in 0..150 {
        let name = format!("f{}", next() % 12);
        match next() % 6 {
            0 | 1 => {
                let len = (next() % (3 * PAYLOAD_SIZE as u64)) as usize;
                let bytes = data(next(), len);
                match v.put_bytes(&name, &bytes) {
                    Ok(()) => {
                        model.insert(name, bytes);
                    }
                    Err(VaultError::Full) => {}
                    Err(e) => panic!("{e:?}"),
                }
            }
            2 => {
                let r = v.delete(&name);
                assert_eq!(r.is_ok(), model.remove(&name).is_some());
            }
            3 => {
                let to = format!("f{}", next() % 12);
                let r = v.rename(&name, &to);
                if model.contains_key(&name) && !model.contains_key(&to) {
                    r.unwrap();
                    let b = model.remove(&name).unwrap();
                    model.insert(to, b);
                } else {
                    assert!(r.is_err());
                }
            }
            4 => {
                drop(v);
                v = open(&disk, b"pw").unwrap();
            }
            _ => {
                if let Some(b) = model.get(&name) {
                    assert_eq!(&v.get_bytes(&name).unwrap(), b, "step {step}");
                }
            }
        }
        let listed: Vec<_> = v.list().unwrap().into_iter().map(|f| f.name).collect();
        let expected: Vec<_> = model.keys().cloned().collect();
        assert_eq!(listed, expected, "step {step}");
    }
}

#[test]
fn file_backed_create_open_and_path_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.vault");
    // Real KDF once, to cover the public path-based API end to end.
    let mut v = Vault::create(&path, 3 << 20, b"pw").unwrap();
    v.put_bytes("x", b"y").unwrap();
    drop(v);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);
    assert!(matches!(Vault::create(&path, 3 << 20, b"pw"), Err(VaultError::PathExists { .. })));
    assert!(matches!(
        Vault::create(dir.path().join("small"), 1000, b"pw"),
        Err(VaultError::TooSmall { .. })
    ));
    assert!(!dir.path().join("small").exists());
    let v = Vault::open(&path, b"pw").unwrap();
    assert_eq!(v.get_bytes("x").unwrap(), b"y");
    assert!(format!("{v:?}").starts_with("Vault"));
    drop(v);
    assert!(matches!(Vault::open(&path, b"nope"), Err(VaultError::NoVolume)));
}

#[test]
fn one_writer_at_a_time_readers_share_and_waiters_see_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.vault");
    let mut w = Vault::create(&path, 2 << 20, b"pw").unwrap();
    w.put_bytes("first", b"1").unwrap();
    // The lock is taken before any password work: these fail at once.
    assert!(matches!(Vault::open(&path, b"pw"), Err(VaultError::InUse)));
    let ro = OpenOptions::new().read_only(true);
    assert!(matches!(Vault::open_with(&path, b"pw", &[], ro), Err(VaultError::InUse)));
    let replace = OpenOptions::new().danger_replace_hidden(true);
    assert!(matches!(Vault::add_volume_with(&path, b"pw", b"h", replace), Err(VaultError::InUse)));
    assert_eq!(VaultError::InUse.to_string(), "the container is in use by another process");

    // A waiting writer gets the container when the first one closes it, and sees its commit.
    let waiter = std::thread::spawn({
        let path = path.clone();
        move || {
            let mut v = Vault::open_with(&path, b"pw", &[], OpenOptions::new().wait(true))?;
            let seen = v.get_bytes("second")?;
            v.put_bytes("third", b"3")?;
            Ok::<_, VaultError>(seen)
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!waiter.is_finished(), "the waiter must wait for the writer");
    w.put_bytes("second", b"2").unwrap();
    drop(w);
    assert_eq!(waiter.join().unwrap().unwrap(), b"2");

    // Readers share the container, exclude writers, and cannot write.
    let mut r1 = Vault::open_with(&path, b"pw", &[], ro).unwrap();
    let r2 = Vault::open_with(&path, b"pw", &[], ro).unwrap();
    assert!(matches!(Vault::open(&path, b"pw"), Err(VaultError::InUse)));
    let names: Vec<_> = r2.list().unwrap().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["first", "second", "third"]);
    assert!(matches!(r1.put_bytes("x", b"x"), Err(VaultError::ReadOnly)));
    assert!(matches!(r1.delete("first"), Err(VaultError::ReadOnly)));
    assert!(matches!(r1.rename("first", "y"), Err(VaultError::ReadOnly)));
    drop((r1, r2));
    Vault::open(&path, b"pw").unwrap();
}

#[test]
fn add_volume_refuses_unless_told_to_replace_what_may_be_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.vault");
    drop(Vault::create(&path, 2 << 20, b"decoy").unwrap());
    let before = std::fs::read(&path).unwrap();
    let err = Vault::add_volume(&path, b"decoy", b"hidden").unwrap_err();
    assert!(matches!(err, VaultError::MayReplaceHidden), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("cannot tell") && msg.contains("--replace-hidden"), "{msg}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
    let replace = OpenOptions::new().danger_replace_hidden(true);
    let mut h = Vault::add_volume_with(&path, b"decoy", b"hidden", replace).unwrap();
    h.put_bytes("s", b"secret").unwrap();
    drop(h);
    assert_eq!(Vault::open(&path, b"hidden").unwrap().get_bytes("s").unwrap(), b"secret");
}

#[test]
fn create_states_the_minimum_and_checks_free_space_first() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    let err = Vault::create(&small, 100 << 10, b"pw").unwrap_err();
    assert!(matches!(err, VaultError::TooSmall { size: 102_400, min: MIN_CONTAINER_SIZE }));
    assert!(err.to_string().contains("minimum of 1048576 bytes"), "{err}");
    // 200 TiB: below the format's maximum, above any test machine's free space.
    let huge = dir.path().join("huge");
    let err = Vault::create(&huge, 200 << 40, b"pw").unwrap_err();
    assert!(matches!(err, VaultError::NoRoom { needed, .. } if needed == 200 << 40), "{err:?}");
    assert!(!huge.exists(), "nothing created");
    let mut seen = Vec::new();
    let ok = dir.path().join("ok");
    Vault::create_with_progress(&ok, 3 << 20, b"pw", &mut |done, total| seen.push((done, total)))
        .unwrap();
    assert_eq!(seen.last(), Some(&(3 << 20, 3 << 20)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
}

/// Hidden volume survival under writes to a decoy opened alone (without protection), over
/// `trials` fresh containers: 64 MiB container, a hidden volume of 64 files of 1, 2, 3 and 2
/// blocks (8 MiB), the decoy writing `fraction` of the container in four files. Returns, per
/// fraction, (trials whose hidden volume opened, files surviving, bytes surviving) with the
/// two fractions over all trials.
fn survival(trials: usize, fractions: &[f64]) -> Vec<(f64, usize, f64, f64)> {
    const FILES: usize = 64;
    let file_len = |i: usize| [1, 2, 3, 2][i % 4] * PAYLOAD_SIZE - 100;
    let all_bytes: usize = (0..FILES).map(file_len).sum::<usize>() * trials;
    let mut out = Vec::new();
    for &fraction in fractions {
        let (mut opened, mut files_ok, mut bytes_ok) = (0, 0usize, 0u64);
        for t in 0..trials {
            let disk = mem(64 << 20);
            let mut d = Vault::create_in(Box::new(disk.clone()), b"decoy", KDF).unwrap();
            d.put_bytes("decoy", b"d").unwrap();
            drop(d);
            let mut h =
                Vault::add_volume_in(Box::new(disk.clone()), b"decoy", b"hidden", KDF).unwrap();
            for i in 0..FILES {
                let content = data(i as u64 + 1000 * t as u64, file_len(i));
                h.put_bytes(&format!("f{i}"), &content).unwrap();
            }
            drop(h);
            let mut d = open(&disk, b"decoy").unwrap();
            let total = (fraction * d.capacity() as f64) as usize;
            for k in 0..4 {
                d.put_bytes(&format!("w{k}"), &data(k, total / 4)).unwrap();
            }
            drop(d);
            let Ok(h) = open(&disk, b"hidden") else { continue };
            opened += 1;
            for i in 0..FILES {
                if h.get_bytes(&format!("f{i}")).ok()
                    == Some(data(i as u64 + 1000 * t as u64, file_len(i)))
                {
                    files_ok += 1;
                    bytes_ok += file_len(i) as u64;
                }
            }
        }
        let all_files = (trials * FILES) as f64;
        out.push((
            fraction,
            opened,
            files_ok as f64 / all_files,
            bytes_ok as f64 / all_bytes as f64,
        ));
    }
    out
}

fn print_survival(rows: &[(f64, usize, f64, f64)], trials: usize) {
    println!("decoy writes | hidden volume opens | files surviving | bytes surviving");
    for &(f, opened, files, bytes) in rows {
        println!(
            "{:>11.0}% | {opened}/{trials} | {:.1}% | {:.1}%",
            f * 100.0,
            files * 100.0,
            bytes * 100.0
        );
    }
}

/// The hidden volume stays readable after unprotected decoy writes, and only the files whose
/// blocks were hit are lost (about (1 - f)^n of n-block files survive writes over a fraction
/// f of the container). Figures for BENCHMARKS.md: `cargo test -p samizdat-vault --release --test vault
/// hidden_volume_survival_figures -- --ignored --nocapture`.
#[test]
fn hidden_volume_survives_unprotected_decoy_writes() {
    let trials = 2;
    let rows = survival(trials, &[0.05, 0.20]);
    print_survival(&rows, trials);
    for &(f, opened, files, _) in &rows {
        assert_eq!(opened, trials, "hidden volume lost after decoy writes of {f}");
        // Expected (1 - f)^2 (0.90 and 0.64); floors well below, for random allocation.
        let floor = (1.0 - f).powi(2) - 0.15;
        assert!(files >= floor, "only {files} of files survived {f}");
    }
}

#[test]
#[ignore = "figures for BENCHMARKS.md (about a minute)"]
fn hidden_volume_survival_figures() {
    let trials = 20;
    print_survival(&survival(trials, &[0.05, 0.20, 0.50]), trials);
}
