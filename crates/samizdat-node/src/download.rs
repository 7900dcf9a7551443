//! Writing a download to disk, and resuming it.
//!
//! While a download runs, `OUT.part` holds decrypted file bytes at their final offsets and
//! `OUT.part.state` holds the verified outboard, encrypted under a key derived from the link
//! key (so the state file reveals nothing to someone without the link). On restart every group
//! already in `OUT.part` is re-encrypted and checked against its leaf: only groups that verify
//! count as done, whatever state the previous run died in. Group 0 (which carries the encrypted
//! manifest) is always fetched again. On completion the file is truncated to its size, synced,
//! and renamed to `OUT`.

use crate::NodeError;
use samizdat_content::{
    ContentKey, ContentRoot, GROUP_SIZE, HEADER_LEN, Manifest, Outboard, group_range,
};
use samizdat_engine::Resume;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

fn state_key(key: &ContentKey) -> ContentKey {
    ContentKey::from_bytes(key.derive("samizdat 2026 resume state v1"))
}

/// Decrypts (or encrypts) a download state file in place.
pub(crate) fn decrypt_state(key: &ContentKey, bytes: &mut [u8]) {
    state_key(key).apply_at(0, bytes);
}

/// Paths of a download's files.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    pub out: PathBuf,
    pub part: PathBuf,
    pub state: PathBuf,
}

impl Paths {
    pub(crate) fn new(out: &Path) -> Self {
        let mut part = out.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let mut state = part.as_os_str().to_owned();
        state.push(".state");
        Paths { out: out.to_owned(), part, state: PathBuf::from(state) }
    }
}

/// An open download target.
#[derive(Debug)]
pub(crate) struct Target {
    pub paths: Paths,
    pub file: File,
    pub key: ContentKey,
    pub root: ContentRoot,
    pub manifest: Option<Manifest>,
    pub blob_len: Option<u64>,
    /// Verified bytes already on disk when this run started.
    pub resumed_bytes: u64,
}

/// Opens (or creates) the part file and works out what is already verified on disk.
/// Runs blocking file I/O: call it off the driver thread.
pub(crate) fn prepare(
    out: &Path,
    root: ContentRoot,
    key: ContentKey,
) -> Result<(Target, Resume), NodeError> {
    let paths = Paths::new(out);
    if paths.out.exists() {
        return Err(NodeError::OutputExists(paths.out));
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&paths.part)
        .map_err(|e| NodeError::io("opening the output file", e))?;
    let mut resume = Resume::default();
    let mut resumed_bytes = 0;
    let mut blob_len = None;
    if let Ok(mut state) = std::fs::read(&paths.state) {
        decrypt_state(&key, &mut state);
        if let Ok(outboard) = Outboard::from_bytes(&state) {
            if outboard.check_root(&root).is_ok() {
                let part_len =
                    file.metadata().map_err(|e| NodeError::io("reading the output file", e))?.len();
                let mut have = vec![false; outboard.groups() as usize];
                let mut buf = vec![0u8; GROUP_SIZE];
                for g in 1..outboard.groups() {
                    let r = group_range(outboard.blob_len, g);
                    let (start, len) = (r.start - HEADER_LEN as u64, (r.end - r.start) as usize);
                    if start + len as u64 > part_len {
                        continue;
                    }
                    let data = &mut buf[..len];
                    file.read_exact_at(data, start)
                        .map_err(|e| NodeError::io("reading the output file", e))?;
                    key.apply(g, data);
                    if outboard.verify_group(&root, g, data).is_ok() {
                        have[g as usize] = true;
                        resumed_bytes += len as u64;
                    }
                }
                blob_len = Some(outboard.blob_len);
                resume = Resume { outboard: Some(outboard), have };
            }
        }
    }
    Ok((Target { paths, file, key, root, manifest: None, blob_len, resumed_bytes }, resume))
}

impl Target {
    /// Persists the verified outboard so a later run can resume.
    pub(crate) fn save_outboard(&mut self, outboard: &Outboard) -> Result<(), NodeError> {
        self.blob_len = Some(outboard.blob_len);
        let mut bytes = outboard.to_bytes();
        decrypt_state(&self.key, &mut bytes);
        let tmp = self.paths.state.with_extension("tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| NodeError::io("saving download state", e))?;
        std::fs::rename(&tmp, &self.paths.state)
            .map_err(|e| NodeError::io("saving download state", e))
    }

    /// Decrypts a verified group and writes its file bytes in place.
    pub(crate) fn write_group(&mut self, index: u32, mut data: Vec<u8>) -> Result<(), NodeError> {
        let blob_len = self.blob_len.ok_or(NodeError::Corrupt("group before outboard"))?;
        self.key.apply(index, &mut data);
        let range = group_range(blob_len, index);
        let mut body: &[u8] = &data;
        let mut file_offset = range.start.saturating_sub(HEADER_LEN as u64);
        if index == 0 {
            let header = data.get(..HEADER_LEN).ok_or(NodeError::Corrupt("short first group"))?;
            let manifest =
                Manifest::from_header(header).map_err(|_| NodeError::Corrupt("manifest"))?;
            if manifest.size + HEADER_LEN as u64 != blob_len {
                return Err(NodeError::Corrupt("manifest size"));
            }
            self.manifest = Some(manifest);
            body = &data[HEADER_LEN..];
            file_offset = 0;
        }
        self.file
            .write_all_at(body, file_offset)
            .map_err(|e| NodeError::io("writing the output file", e))
    }

    /// Truncates, syncs and renames the finished file; removes the state file.
    pub(crate) fn finish(self) -> Result<Manifest, NodeError> {
        let manifest = self.manifest.ok_or(NodeError::Corrupt("no manifest"))?;
        let io = |e| NodeError::io("finishing the output file", e);
        self.file.set_len(manifest.size).map_err(io)?;
        self.file.sync_all().map_err(io)?;
        std::fs::rename(&self.paths.part, &self.paths.out).map_err(io)?;
        let _ = std::fs::remove_file(&self.paths.state);
        Ok(manifest)
    }
}
