//! The writer of one download: a blocking thread that owns the output file and the seeding
//! copy, so that decrypting and writing never run on the driver task.
//!
//! The driver hands it the verified groups ([`Job::Groups`]) the engine reported in each turn. The
//! writer decrypts contiguous groups into one run and writes each run with a single `pwrite`
//! (up to [`RUN_BYTES`]); small writes cost the kernel far more per byte, above all on tmpfs.
//! After each run it reports how many groups are stored ([`Io::Stored`]), which the driver
//! passes to [`samizdat_engine::Engine::stored`]: the engine stops requesting once a window of
//! groups is in flight or unstored, so a slow disk slows the download instead of filling
//! memory. The writer also sends the progress updates (bytes on disk, not merely received) and
//! the download's outcome, after the output's lock is released or the file is finished.

use crate::download::Target;
use crate::driver::{Counted, Io};
use crate::state::{BlobSource, Store};
use crate::store::PendingBlob;
use crate::{FetchOutcome, NodeError, Progress};
use samizdat_content::{ContentKey, ContentRoot, GROUP_SIZE, HEADER_LEN, Outboard, group_range};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use tokio::sync::{mpsc, oneshot};

/// Largest run of contiguous groups written at once.
pub(crate) const RUN_BYTES: usize = 1 << 20;

/// What the driver asks of a download's writer.
pub(crate) enum Job {
    /// The outboard is verified: persist it for a resume.
    Outboard(Outboard),
    /// Verified (still encrypted) groups, by index: those the engine reported during one turn
    /// of the driver, so the writer thread is woken once per batch rather than per group.
    Groups(Vec<(u32, Vec<u8>)>),
    /// Every group was handed over: finish the file and keep the seeding copy.
    Finish,
    /// The download failed: give up (the part file stays for a resume if it holds data).
    Abort(NodeError),
}

/// The ciphertext copy a download keeps for seeding.
pub(crate) enum Seed {
    /// Data directory: a blob file, written at each group's offset as the group is verified
    /// (removed if the download does not complete).
    File(PendingBlob),
    /// Vault: a vault file is written once, sequentially, so the copy is made when the
    /// download completes, by re-encrypting the finished output group by group and streaming
    /// it into the vault. Only group 0 (which carries the encrypted manifest, not file bytes)
    /// is kept from the wire; it is fetched again by every attempt.
    Vault { group0: Option<Vec<u8>> },
}

/// Everything a writer owns.
pub(crate) struct Writer {
    /// Tags this writer's messages to the driver.
    pub generation: u64,
    /// Set by the driver when the download is abandoned or the node stops: long copies
    /// (resumed groups into a fresh seeding copy, a finished file into the vault) stop early.
    pub cancel: Arc<AtomicBool>,
    pub target: Target,
    pub seed: Option<Seed>,
    pub store: Store,
    pub source: Counted,
    pub progress: mpsc::Sender<Progress>,
    pub outcome: oneshot::Sender<Result<FetchOutcome, NodeError>>,
    pub io: mpsc::Sender<Io>,
    /// Groups resumed from the output file, to copy into a fresh seeding copy first.
    pub resumed: Option<(Outboard, Vec<bool>)>,
    /// The link's provider base: this node announces itself under its keys once the
    /// seeding copy is kept.
    pub provider_base: [u8; 32],
}

/// A run of contiguous groups waiting to be written.
struct Run {
    first: u32,
    /// Ciphertext, as verified, one buffer per group (decrypted in place and written with one
    /// vectored write: no copy into a run buffer).
    groups: Vec<Vec<u8>>,
    bytes: usize,
}

impl Writer {
    /// Runs until the download finishes, fails, or the driver goes away. Blocking.
    pub(crate) fn run(mut self, jobs: Receiver<Job>) {
        let root = self.target.root;
        if let (Some((outboard, have)), Some(Seed::File(file))) = (&self.resumed, &self.seed) {
            // Resumed groups must also be in the seeding copy: rebuild it from the output.
            if copy_resumed(&self.target, outboard, have, file, &self.cancel).is_err() {
                self.seed = None;
            }
        }
        if let Err(e) = self.target.reserve() {
            return self.fail(root, e);
        }
        let mut verified = self.target.resumed_bytes;
        let mut run: Option<Run> = None;
        loop {
            // Take what is queued; once nothing is, write the run out before blocking.
            let job = match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => {
                    let _ = self.flush(&mut run, &mut verified);
                    return self.end(Err(NodeError::Stopped));
                }
            };
            let job = match job {
                Some(job) => job,
                None => {
                    if let Err(e) = self.flush(&mut run, &mut verified) {
                        return self.fail(root, e);
                    }
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => return self.end(Err(NodeError::Stopped)),
                    }
                }
            };
            match job {
                Job::Outboard(outboard) => {
                    if let Err(e) =
                        self.target.save_outboard(&outboard).and_then(|()| self.target.reserve())
                    {
                        return self.fail(root, e);
                    }
                }
                Job::Groups(groups) => {
                    for (index, data) in groups {
                        if let Err(e) = self.add_group(&mut run, &mut verified, index, data) {
                            return self.fail(root, e);
                        }
                    }
                }
                Job::Finish => {
                    if let Err(e) = self.flush(&mut run, &mut verified) {
                        return self.fail(root, e);
                    }
                    return self.finish();
                }
                Job::Abort(e) => {
                    let _ = self.flush(&mut run, &mut verified);
                    return self.end(Err(e));
                }
            }
        }
    }

    /// Adds a verified group to the pending run (writing the run first if the group does not
    /// extend it); group 0, which carries the manifest, is written on its own.
    fn add_group(
        &mut self,
        run: &mut Option<Run>,
        verified: &mut u64,
        index: u32,
        data: Vec<u8>,
    ) -> Result<(), NodeError> {
        if index == 0 {
            if let Some(Seed::Vault { group0 }) = &mut self.seed {
                *group0 = Some(data.clone());
            }
            *verified += data.len() as u64;
            if let Some(Seed::File(file)) = &self.seed {
                if file.write_at(0, &data).is_err() {
                    self.seed = None;
                }
            }
            self.target.write_group(0, data)?;
            self.stored(1, *verified);
            return Ok(());
        }
        let joins = run.as_ref().is_some_and(|r| {
            r.first + r.groups.len() as u32 == index && r.bytes + data.len() <= RUN_BYTES
        });
        if !joins {
            self.flush(run, verified)?;
        }
        let r = run.get_or_insert_with(|| Run {
            first: index,
            groups: Vec::with_capacity(RUN_BYTES / GROUP_SIZE),
            bytes: 0,
        });
        r.bytes += data.len();
        r.groups.push(data);
        Ok(())
    }

    /// Writes the pending run (ciphertext to the seeding copy, plaintext to the output).
    fn flush(&mut self, run: &mut Option<Run>, verified: &mut u64) -> Result<(), NodeError> {
        let Some(Run { first, mut groups, bytes }) = run.take() else { return Ok(()) };
        let blob_len = self.target.blob_len.ok_or(NodeError::Corrupt("group before outboard"))?;
        let start = group_range(blob_len, first).start;
        if let Some(Seed::File(file)) = &self.seed {
            let mut at = start;
            for g in &groups {
                if file.write_at(at, g).is_err() {
                    self.seed = None;
                    break;
                }
                at += g.len() as u64;
            }
        }
        let mut at = start;
        for g in &mut groups {
            self.target.key.apply_at(at, g);
            at += g.len() as u64;
        }
        self.target.write_run(start - HEADER_LEN as u64, &groups)?;
        *verified += bytes as u64;
        self.stored(groups.len() as u32, *verified);
        Ok(())
    }

    /// Tells the engine `groups` more are stored and the caller how far the download is.
    fn stored(&self, groups: u32, verified: u64) {
        let _ = self.io.blocking_send(Io::Stored(self.target.root, self.generation, groups));
        let _ = self.progress.try_send(Progress {
            verified_bytes: verified,
            total_bytes: self.target.blob_len,
            resumed_bytes: self.target.resumed_bytes,
        });
    }

    /// A write failed: the driver abandons the download.
    fn fail(self, root: ContentRoot, error: NodeError) {
        let _ = self.io.blocking_send(Io::WriteFailed(root, self.generation));
        self.end(Err(error));
    }

    /// Releases the output (dropping the target) before answering the caller.
    fn end(self, result: Result<FetchOutcome, NodeError>) {
        let Writer { target, outcome, .. } = self;
        drop(target);
        let _ = outcome.send(result);
    }

    /// Finishes the output and keeps the seeding copy, then answers the caller: a completed
    /// fetch means the node seeds it.
    fn finish(self) {
        let Writer { target, seed, store, source, outcome, cancel, io, provider_base, .. } = self;
        let root = target.root;
        let resumed_bytes = target.resumed_bytes;
        let outboard = seed.as_ref().and(target.outboard.clone());
        let key = target.key.clone();
        let result = target.finish().map(|(manifest, path)| FetchOutcome {
            bytes: manifest.size,
            manifest,
            resumed_bytes,
            path,
        });
        if let (Ok(done), Some(outboard)) = (&result, outboard) {
            let seeding = seed.is_some();
            let kept = match seed {
                // Synced before the source is locked: serving waits for no disk flush.
                Some(Seed::File(file)) => match file.sync() {
                    Ok(()) => match &mut *source.write() {
                        BlobSource::Files(files) => files.commit(file, outboard),
                        _ => Ok(()),
                    },
                    Err(e) => Err(NodeError::io("storing a seeding copy", e)),
                },
                Some(Seed::Vault { group0: Some(group0) }) => {
                    seed_into_store(&store, &done.path, &key, root, outboard, &group0, &cancel)
                        .and_then(|outboard| {
                            let locator = key.locator(&root);
                            source.write().register(&store, root, locator, outboard)
                        })
                }
                _ => Ok(()),
            };
            match kept {
                // A node that keeps a copy serves it: it announces itself as a provider.
                Ok(()) if seeding => {
                    let _ = io.blocking_send(Io::Seeded(root, provider_base));
                }
                Ok(()) => {}
                Err(e) => tracing::debug!("cannot keep a seeding copy: {e}"),
            }
        }
        let _ = outcome.send(result);
    }
}

/// Streams the ciphertext of a finished download into the store: group 0 as received, every
/// other group re-encrypted from the output file and checked against its leaf (so a file
/// changed on disk since is not seeded). Blocking.
fn seed_into_store(
    store: &Store,
    out: &Path,
    key: &ContentKey,
    root: ContentRoot,
    outboard: Outboard,
    group0: &[u8],
    cancel: &AtomicBool,
) -> Result<Outboard, NodeError> {
    let file = File::open(out).map_err(|e| NodeError::io("reading a finished download", e))?;
    let corrupt = |_| NodeError::Corrupt("download (changed on disk before it was seeded)");
    let write = |e| NodeError::io("storing a seeding copy", e);
    let locator = key.locator(&root);
    let (_, _, outboard) = store.put_blob(|sink| {
        outboard.verify_group(&root, 0, group0).map_err(corrupt)?;
        sink.write_all(group0).map_err(write)?;
        let mut buf = vec![0u8; GROUP_SIZE];
        for g in 1..outboard.groups() {
            if cancel.load(Ordering::Relaxed) {
                return Err(NodeError::Stopped);
            }
            let r = group_range(outboard.blob_len, g);
            let data = &mut buf[..(r.end - r.start) as usize];
            file.read_exact_at(data, r.start - HEADER_LEN as u64)
                .map_err(|e| NodeError::io("reading a finished download", e))?;
            key.apply(g, data);
            outboard.verify_group(&root, g, data).map_err(corrupt)?;
            sink.write_all(data).map_err(write)?;
        }
        Ok((root, locator, outboard))
    })?;
    Ok(outboard)
}

/// Copies groups resumed from the output file into the seeding copy (re-encrypting them).
fn copy_resumed(
    target: &Target,
    outboard: &Outboard,
    have: &[bool],
    seed: &PendingBlob,
    cancel: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; GROUP_SIZE];
    for (g, _) in have.iter().enumerate().filter(|(_, h)| **h) {
        if cancel.load(Ordering::Relaxed) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let g = g as u32;
        let r = group_range(outboard.blob_len, g);
        let len = (r.end - r.start) as usize;
        let data = &mut buf[..len];
        target.file.read_exact_at(data, r.start - HEADER_LEN as u64)?;
        target.key.apply(g, data);
        seed.write_at(r.start, data)?;
    }
    Ok(())
}
