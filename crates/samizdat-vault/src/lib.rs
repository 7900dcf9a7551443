//! Deniable vault: an encrypted container with hidden volumes and a crash-safe file store.
//!
//! Samizdat keeps everything it stores on disk (identity keys, routing tables, dead drops held
//! for others, caches, the user's own files) inside a vault, so that a seized disk shows only
//! random bytes, and a password given up under pressure opens only a decoy.
//!
//! # Format (version 3)
//!
//! A container is a file or block device of `64 KiB × (n + 1)` bytes. Nothing in it is in
//! clear: no magic, version, size or count. All of it is random bytes, or ciphertext that is
//! indistinguishable from random bytes.
//!
//! ```text
//! block 0 (header, 64 KiB)          blocks 1..=n (data area, 64 KiB each)
//! ┌──────┬────────┬────────┬───┬────────┐ ┌──────────┬──────────┬───
//! │ salt │ slot 0 │ slot 1 │ … │ slot 14│ │ nonce|ciphertext|tag │ …
//! │ 32 B │ 4 KiB  │ 4 KiB  │   │ 4 KiB  │ │ 24 B | 65 496 B |16 B│
//! └──────┴────────┴────────┴───┴────────┘ └──────────┴──────────┴───
//! ```
//!
//! * **Salt**: the first 32 random bytes of the container. One Argon2id run
//!   ([`KdfCost::FORMAT`]: 64 MiB, 3 passes) per password gives the password key.
//! * **Header slots** (15, so at most 15 volumes). Slot `i` holds, at fixed offsets, a *keys
//!   record* (the volume master key sealed under a key derived from the password key and `i`)
//!   and two alternating *commit records* (sealed under a key derived from the volume master
//!   key) giving the generation, the location of the volume's catalog and the master key of the
//!   volume in slot `i - 1`. Unused slots and unused bytes are random. Opening tries the
//!   password key on all 15 keys records, always, and takes the highest that verifies.
//! * **Nesting**: volume `i` holds the key of volume `i - 1`, so opening a volume also opens
//!   every less hidden one below it, and writes avoid their blocks.
//! * **Blocks**: every data-area block (and every header record) is `nonce ‖ ciphertext ‖ tag`:
//!   a fresh random 192-bit nonce, and AES-256-GCM under a one-time key
//!   `BLAKE3-keyed(K, nonce)` derived from the record's long-term key `K` (so no key ever
//!   seals two records, whatever the number of writes). The associated data binds the block's
//!   physical index and its role (content chunk number, or metadata generation and sequence
//!   number), so a tampered, moved or replayed block fails to verify.
//! * **Metadata** (the *catalog*: names, sizes, per-file keys, position maps) is kept apart
//!   from content, in its own chain of metadata blocks, rewritten copy-on-write at each commit,
//!   in up to 8 copies at pseudo-random positions derived from the volume key (each copy points
//!   at every copy of the next block): overwriting part of a hidden volume loses only the files
//!   whose blocks were hit, unless every copy of a metadata block was. Version 2 containers
//!   (one copy) open and are rewritten in this layout by their next commit.
//! * **Allocation**: content and metadata blocks are taken at random positions among the blocks
//!   that no opened volume uses.
//!
//! Reading a whole file ([`Vault::get`], [`Vault::verify`]) streams it through a pipeline: worker
//! threads read and open blocks ahead of the caller into a small ring of buffers while the
//! caller hands out the authenticated ones in order. [`FileReader`] (for `Read` + `Seek`) opens
//! blocks in batches on all cores, the batch growing while reading is sequential.
//!
//! # Crash consistency and deletion
//!
//! Each write is a commit: content blocks, fsync, new catalog blocks, fsync, commit record in
//! the slot's other commit position, fsync. The newest commit record that verifies wins, and it
//! only points at blocks that were durable before it was written. After a commit the previous
//! catalog and the blocks of deleted or replaced files are overwritten with random bytes; their
//! per-file keys existed only in the catalog (crypto-shredding).
//!
//! A file is streamed in with a [`FileWriter`] ([`Vault::create_file`]), which borrows the vault
//! until it commits, or with a [`PendingFile`] ([`Vault::begin_file`]), which borrows nothing:
//! a vault shared behind a mutex is then locked for each batch, not for the whole file, and
//! reads and other writes run in between. Either way the file's blocks are its own until it
//! commits or is discarded.
//!
//! # One writer at a time
//!
//! A [`Vault`] opened from a path holds an advisory `flock(2)` lock on the container for as
//! long as it lives: exclusive for writers, shared for [`OpenOptions::read_only`] readers.
//! Another holder makes opening fail with [`VaultError::InUse`], or wait
//! ([`OpenOptions::wait`]). The lock is taken before the header is read, so no commit of one
//! process is ever overwritten by another working from an older catalog.
//!
//! # Decoy overwrite risk
//!
//! A volume opened alone does not know about the volumes above it: its writes may land on their
//! blocks and destroy hidden data. Open the most hidden volume (which opens all below it), or
//! use [`Vault::open_protected`] to write to a decoy while protecting the hidden volumes.
//!
//! See `docs/vault.md` for the threat model.
//!
//! # Example
//!
//! ```
//! use samizdat_vault::{KdfCost, MemStorage, Vault};
//! use std::sync::Arc;
//!
//! # fn main() -> Result<(), samizdat_vault::VaultError> {
//! // Real containers use `Vault::create(path, size, password)`; this example keeps the
//! // container in memory and uses a cheap test KDF.
//! let disk = Arc::new(MemStorage::new(4 << 20));
//! let kdf = KdfCost::DANGER_INSECURE_TEST;
//! let mut decoy = Vault::create_in(Box::new(disk.clone()), b"decoy", kdf)?;
//! decoy.put_bytes("shopping.txt", b"milk, eggs")?;
//! drop(decoy);
//!
//! // A hidden volume nested on the decoy.
//! let mut hidden = Vault::add_volume_in(Box::new(disk.clone()), b"decoy", b"hidden", kdf)?;
//! hidden.put("notes/sources.txt", &b"names that must stay secret"[..])?;
//! drop(hidden);
//!
//! // Each password opens its own volume; the decoy shows no trace of the hidden one.
//! let decoy = Vault::open_in(Box::new(disk.clone()), b"decoy", &[], kdf)?;
//! assert_eq!(decoy.list()?.len(), 1);
//! let hidden = Vault::open_in(Box::new(disk.clone()), b"hidden", &[], kdf)?;
//! assert_eq!(hidden.get_bytes("notes/sources.txt")?, b"names that must stay secret");
//! assert!(matches!(
//!     Vault::open_in(Box::new(disk), b"wrong", &[], kdf),
//!     Err(samizdat_vault::VaultError::NoVolume)
//! ));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod catalog;
mod error;
mod format;
mod io;
mod storage;
mod vault;

pub use catalog::MAX_NAME_LEN;
pub use error::{Result, VaultError};
pub use format::{
    BLOCK_SIZE, KdfCost, MAX_CONTAINER_SIZE, MAX_VOLUMES, MIN_CONTAINER_SIZE, PAYLOAD_SIZE,
};
pub use io::{FileReader, FileWriter, PendingFile};
pub use storage::{FileStorage, Lock, MemStorage, Storage};
pub use vault::{FileInfo, OpenOptions, Vault};

/// Parses arbitrary bytes as a decrypted catalog (fuzzing entry point for the metadata parser,
/// which is otherwise only reachable behind authentication).
#[doc(hidden)]
pub fn fuzz_parse_catalog(bytes: &[u8], nblocks: u32) -> bool {
    catalog::Catalog::parse(bytes, nblocks).is_ok()
}
