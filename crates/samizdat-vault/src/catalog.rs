//! The per-volume catalog: file names, sizes, per-file keys and position maps.
//!
//! The catalog is the only metadata of a volume. It is serialized, split over metadata blocks
//! and sealed under a key derived from the volume master key (see [`crate::format`]).

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::error::{Result, VaultError};
use crate::format::{PAYLOAD_SIZE, Reader, SecretKey};

/// Longest file name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Version byte at the start of a serialized catalog (inside the encryption).
const CATALOG_VERSION: u8 = 1;

/// One stored file.
#[derive(Clone, Debug)]
pub(crate) struct FileEntry {
    /// Length in bytes.
    pub(crate) size: u64,
    /// The file's own content key (destroyed with the entry: crypto-shredding).
    pub(crate) key: SecretKey,
    /// Position map: physical block of each content chunk, in order.
    pub(crate) blocks: Vec<u32>,
}

/// All files of one volume.
#[derive(Clone, Debug, Default)]
pub(crate) struct Catalog {
    pub(crate) files: BTreeMap<String, FileEntry>,
}

/// Number of content blocks a file of `size` bytes occupies.
pub(crate) fn blocks_for(size: u64) -> u64 {
    size.div_ceil(PAYLOAD_SIZE as u64)
}

/// Checks a file name.
pub(crate) fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(VaultError::InvalidName { reason: "the name is empty" });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(VaultError::InvalidName { reason: "the name is longer than 1024 bytes" });
    }
    if name.contains('\0') {
        return Err(VaultError::InvalidName { reason: "the name contains a NUL byte" });
    }
    Ok(())
}

impl Catalog {
    /// Serializes the catalog (the buffer is zeroized on drop: it holds file keys).
    pub(crate) fn serialize(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.push(CATALOG_VERSION);
        out.extend_from_slice(&(self.files.len() as u32).to_le_bytes());
        for (name, f) in &self.files {
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&f.size.to_le_bytes());
            out.extend_from_slice(&f.key.0);
            for b in &f.blocks {
                out.extend_from_slice(&b.to_le_bytes());
            }
        }
        out
    }

    /// Parses and validates a serialized catalog for a container of `nblocks` data blocks.
    pub(crate) fn parse(bytes: &[u8], nblocks: u32) -> Result<Catalog> {
        let mut r = Reader::new(bytes);
        if r.u8()? != CATALOG_VERSION {
            return Err(VaultError::corrupt("unknown catalog version"));
        }
        let count = r.u32()?;
        let mut files = BTreeMap::new();
        for _ in 0..count {
            let name_len = usize::from(r.u16()?);
            let name = std::str::from_utf8(r.bytes(name_len)?)
                .map_err(|_| VaultError::corrupt("file name is not UTF-8"))?
                .to_owned();
            check_name(&name).map_err(|_| VaultError::corrupt("invalid file name in catalog"))?;
            let size = r.u64()?;
            let key = r.key()?;
            let n = blocks_for(size);
            if n > u64::from(nblocks) || n * 4 > r.remaining() as u64 {
                return Err(VaultError::corrupt("file larger than the container"));
            }
            let mut blocks = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let b = r.u32()?;
                if b >= nblocks {
                    return Err(VaultError::corrupt("block index beyond the container"));
                }
                blocks.push(b);
            }
            if files.insert(name, FileEntry { size, key, blocks }).is_some() {
                return Err(VaultError::corrupt("duplicate file name in catalog"));
            }
        }
        if r.remaining() != 0 {
            return Err(VaultError::corrupt("trailing bytes after the catalog"));
        }
        Ok(Catalog { files })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn entry(size: u64, first: u32) -> FileEntry {
        let n = blocks_for(size) as u32;
        FileEntry { size, key: SecretKey([first as u8; 32]), blocks: (first..first + n).collect() }
    }

    #[test]
    fn roundtrip() {
        let mut c = Catalog::default();
        c.files.insert("a".into(), entry(0, 0));
        c.files.insert("dir/b".into(), entry(200_000, 10));
        let bytes = c.serialize();
        let back = Catalog::parse(&bytes, 100).unwrap();
        assert_eq!(back.files.len(), 2);
        assert_eq!(back.files["dir/b"].blocks, c.files["dir/b"].blocks);
        assert_eq!(back.files["dir/b"].size, 200_000);
        assert!(Catalog::parse(&bytes, 12).is_err(), "index beyond container");
        assert!(Catalog::parse(&bytes[..bytes.len() - 1], 100).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), n in 0u32..1000) {
            let _ = Catalog::parse(&bytes, n);
        }
    }
}
