//! The one error type of the vault crate.

use std::io;

/// Everything that can go wrong while creating, opening or using a vault.
///
/// No variant ever carries a password, a key or file content. Note that a wrong password and
/// "no volume exists for this password" are deliberately the same variant, [`VaultError::NoVolume`]:
/// the container cannot tell them apart, and neither can the caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// An I/O operation on the container failed (other than a full disk).
    #[error("{context}: {source}")]
    Io {
        /// What the vault was doing.
        context: &'static str,
        /// The underlying operating-system error.
        #[source]
        source: io::Error,
    },
    /// The disk (or the file system holding the container file) is full.
    #[error("{context}: no space left on the device")]
    DiskFull {
        /// What the vault was doing.
        context: &'static str,
    },
    /// No volume opens with this password. This is also what a wrong password, a container
    /// that was never a vault, and a container whose header was destroyed look like.
    #[error("no volume opens with this password")]
    NoVolume,
    /// An authenticated block or record failed to verify, or decrypted metadata is malformed:
    /// the container was tampered with, damaged, truncated, or (for a hidden volume) overwritten
    /// by writes to a less hidden volume that was opened without it.
    #[error("vault data is corrupt or was tampered with: {what}")]
    Corrupt {
        /// Which structure failed to verify.
        what: String,
    },
    /// The requested or existing container size is below the format's minimum.
    #[error("container size {size} bytes is below the minimum of {min} bytes")]
    TooSmall {
        /// The size that was asked for or found.
        size: u64,
        /// The smallest size the format supports.
        min: u64,
    },
    /// The requested container size is above the format's maximum.
    #[error("container size {size} bytes is above the maximum of {max} bytes")]
    TooLarge {
        /// The size that was asked for.
        size: u64,
        /// The largest size the format supports.
        max: u64,
    },
    /// There are not enough free blocks for the write.
    #[error("the vault is full (no free block left for this write)")]
    Full,
    /// No file of this name exists on the open volume.
    #[error("no file named {name:?} in this volume")]
    NotFound {
        /// The name that was looked up.
        name: String,
    },
    /// A file of this name already exists (rename target).
    #[error("a file named {name:?} already exists in this volume")]
    AlreadyExists {
        /// The conflicting name.
        name: String,
    },
    /// A file name is empty, too long or contains a NUL byte.
    #[error("invalid file name: {reason}")]
    InvalidName {
        /// Why the name was refused.
        reason: &'static str,
    },
    /// A password is empty.
    #[error("the password must not be empty")]
    EmptyPassword,
    /// All header slots above the parent volume are taken: no more nested volumes.
    #[error("no free header slot above this volume (at most {max} volumes per container)")]
    NoFreeSlot {
        /// The format's maximum number of volumes.
        max: usize,
    },
    /// The new volume's password already opens a volume in this container.
    #[error("this password already opens a volume in this container")]
    PasswordInUse,
    /// A container already exists at the path given to create.
    #[error("a file already exists at {path}")]
    PathExists {
        /// The path that was asked for.
        path: String,
    },
    /// A previous write failed half-way; the on-disk state is intact but this handle refuses
    /// further writes. Reopen the vault.
    #[error("an earlier write failed; reopen the vault before writing again")]
    Poisoned,
    /// Another process (or another open handle) holds the container: a writer excludes
    /// everyone else, readers exclude writers. Retry later, or wait for it
    /// ([`crate::OpenOptions::wait`]).
    #[error("the container is in use by another process")]
    InUse,
    /// The vault was opened read-only ([`crate::OpenOptions::read_only`]) and a write was
    /// attempted.
    #[error("the vault was opened read-only")]
    ReadOnly,
    /// `add_volume` would write the new volume into the header slot above the parent, where a
    /// more hidden volume may already exist; the container cannot tell (an unused slot and a
    /// used one are both random-looking bytes), so it refuses unless told to replace.
    #[error(
        "refusing to add a volume above this one: a hidden volume may already exist there and \
         would be replaced, and the container cannot tell (unused and used header slots look the \
         same by design); give the password of the most hidden volume you have as the parent, \
         or confirm replacing (--replace-hidden)"
    )]
    MayReplaceHidden,
    /// The file system does not have room for a container of the requested size.
    #[error(
        "not enough free space for the container: {needed} bytes needed, {available} available"
    )]
    NoRoom {
        /// Bytes the container needs.
        needed: u64,
        /// Bytes the file system has free for this user.
        available: u64,
    },
    /// A [`crate::PendingFile`] was handed to a vault other than the one that began it (its
    /// blocks belong to that vault's allocation). Nothing was written.
    #[error("this pending file was begun by another vault handle")]
    WrongVault,
    /// The password key derivation failed (invalid cost parameters).
    #[error("password key derivation failed: {0}")]
    Kdf(String),
}

impl VaultError {
    /// Wraps an I/O error, recognising a full disk.
    pub(crate) fn io(context: &'static str, source: io::Error) -> Self {
        if source.kind() == io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            VaultError::DiskFull { context }
        } else if source.kind() == io::ErrorKind::WouldBlock {
            VaultError::InUse
        } else if source.kind() == io::ErrorKind::UnexpectedEof {
            VaultError::Corrupt { what: format!("{context}: the container is truncated") }
        } else {
            VaultError::Io { context, source }
        }
    }

    /// A corruption error.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        VaultError::Corrupt { what: what.into() }
    }
}

/// Result alias of the vault crate.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;
