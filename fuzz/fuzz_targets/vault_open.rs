//! Fuzz target: open arbitrary bytes as a vault container with a fixed password and read
//! everything that opens; also mutate a valid container, and feed the (normally authenticated)
//! catalog parser directly. Nothing may panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use samizdat_vault::{KdfCost, MIN_CONTAINER_SIZE, MemStorage, Vault};

const KDF: KdfCost = KdfCost::DANGER_INSECURE_TEST;
const PASSWORD: &[u8] = b"fuzz";

/// A valid 2 MiB container with a decoy and a hidden volume holding a few files.
fn template() -> &'static [u8] {
    static TEMPLATE: OnceLock<Vec<u8>> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let disk = Arc::new(MemStorage::new(2 << 20));
        let made = (|| {
            let mut v = Vault::create_in(Box::new(disk.clone()), b"decoy", KDF)?;
            v.put_bytes("decoy.txt", b"decoy")?;
            drop(v);
            let mut v = Vault::add_volume_in(Box::new(disk.clone()), b"decoy", PASSWORD, KDF)?;
            v.put_bytes("a", &[7u8; 100_000])?;
            v.put_bytes("dir/b", b"small")?;
            Ok::<(), samizdat_vault::VaultError>(())
        })();
        match made {
            Ok(()) => disk.to_bytes(),
            Err(_) => Vec::new(),
        }
    })
}

fn exercise(bytes: Vec<u8>, write: bool) {
    let disk = Arc::new(MemStorage::from_bytes(bytes));
    let Ok(mut vault) = Vault::open_in(Box::new(disk), PASSWORD, &[], KDF) else {
        return;
    };
    if let Ok(list) = vault.list() {
        for f in list {
            let _ = vault.get_bytes(&f.name);
        }
    }
    let _ = vault.verify();
    if write {
        let _ = vault.put_bytes("new", b"fuzz write");
        let _ = vault.delete("a");
        let _ = vault.rename("dir/b", "c");
        let _ = vault.get_bytes("new");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        // Raw bytes as a container (padded to the minimum size so opening gets past the
        // size check).
        0 => {
            let mut bytes = rest.to_vec();
            if (bytes.len() as u64) < MIN_CONTAINER_SIZE {
                bytes.resize(MIN_CONTAINER_SIZE as usize, 0);
            }
            exercise(bytes, false);
        }
        // A valid container with patches: (offset: u32 LE, xor byte) records, or truncation.
        1 => {
            let mut bytes = template().to_vec();
            if bytes.is_empty() {
                return;
            }
            for rec in rest.chunks_exact(5) {
                let off = u32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]) as usize;
                if rec[4] == 0 {
                    bytes.truncate(off % (bytes.len() + 1));
                    if bytes.is_empty() {
                        break;
                    }
                } else {
                    let len = bytes.len();
                    bytes[off % len] ^= rec[4];
                }
            }
            exercise(bytes, true);
        }
        // The catalog parser, which normally only sees authenticated plaintext.
        _ => {
            let _ = samizdat_vault::fuzz_parse_catalog(rest, 64);
        }
    }
});
