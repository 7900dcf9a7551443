//! Small private documents of a node (its share records, its remembered peers), kept where its
//! state lives and never in the clear:
//!
//! * in vault mode, as a vault file (the vault encrypts and authenticates it, and nothing
//!   outside the container reveals it exists);
//! * in data-directory mode, as `DATA/<name>`: `nonce (12) || AES-256-GCM(document)` under a key
//!   derived from the node's identity secret (BLAKE3 `derive_key`, one context per document).
//!   The file has no plaintext header, is created 0600 and replaced atomically (write, sync,
//!   rename); a file that fails authentication is refused, never trusted.

use crate::NodeError;
use crate::state::Store;
use crate::vault_store::{self, SharedVault};
use samizdat_identity::Identity;
use samizdat_vault::VaultError;
use std::io::Read;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where one kind of document lives and how it is keyed.
pub(crate) struct DocKind {
    /// Its vault file.
    pub vault_file: &'static str,
    /// Its file in a data directory.
    pub dir_file: &'static str,
    /// The key derivation context.
    pub key_context: &'static str,
    /// Associated data of its AEAD.
    pub aad: &'static [u8],
    /// The largest file read.
    pub max_len: u64,
    /// What it is, for errors ("share records").
    pub what: &'static str,
}

enum Backend {
    Dir(PathBuf),
    Vault(SharedVault),
}

/// One document of a node with a data directory or a vault.
pub(crate) struct SealedDoc {
    kind: &'static DocKind,
    backend: Backend,
    key: Zeroizing<[u8; 32]>,
}

impl SealedDoc {
    /// The document `kind` of `store` (`None` for an ephemeral node, which keeps nothing).
    pub(crate) fn new(store: &Store, identity: &Identity, kind: &'static DocKind) -> Option<Self> {
        let backend = match store {
            Store::Ephemeral => return None,
            Store::Dir { blobs, .. } => {
                Backend::Dir(blobs.parent().unwrap_or(Path::new(".")).join(kind.dir_file))
            }
            Store::Vault(v) => Backend::Vault(v.clone()),
        };
        let secret = identity.danger_secret_bytes();
        let key = Zeroizing::new(blake3::derive_key(kind.key_context, &secret[..]));
        Some(SealedDoc { kind, backend, key })
    }

    fn corrupt(&self) -> NodeError {
        NodeError::Corrupt(self.kind.what)
    }

    /// The document's bytes (`None` if it was never written). Blocking.
    pub(crate) fn load(&self) -> Result<Option<Zeroizing<Vec<u8>>>, NodeError> {
        let what = self.kind.what;
        match &self.backend {
            Backend::Dir(path) => match std::fs::File::open(path) {
                Ok(f) => {
                    let mut bytes = Vec::new();
                    f.take(self.kind.max_len + 1)
                        .read_to_end(&mut bytes)
                        .map_err(|e| NodeError::io(what, e))?;
                    if bytes.len() as u64 > self.kind.max_len {
                        return Err(self.corrupt());
                    }
                    crate::store::open_sealed(&self.key, self.kind.aad, &bytes)
                        .map(|plain| Some(Zeroizing::new(plain.to_vec())))
                        .ok_or_else(|| self.corrupt())
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(NodeError::io(what, e)),
            },
            Backend::Vault(v) => match vault_store::lock(v).get_bytes(self.kind.vault_file) {
                Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
                Err(VaultError::NotFound { .. }) => Ok(None),
                Err(source) => Err(NodeError::Vault { context: what, source }),
            },
        }
    }

    /// The document as JSON (`None` if it was never written; JSON that does not parse as `T`
    /// is corrupt). Blocking.
    pub(crate) fn load_json<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, NodeError> {
        let Some(plain) = self.load()? else { return Ok(None) };
        serde_json::from_slice(&plain).map(Some).map_err(|_| self.corrupt())
    }

    /// Replaces the document with `value` as JSON. Blocking.
    pub(crate) fn save_json<T: serde::Serialize>(&self, value: &T) -> Result<(), NodeError> {
        let plain = Zeroizing::new(serde_json::to_vec(value).map_err(|_| self.corrupt())?);
        self.save(&plain)
    }

    /// Replaces the document. Blocking.
    pub(crate) fn save(&self, plain: &[u8]) -> Result<(), NodeError> {
        match &self.backend {
            Backend::Dir(path) => crate::store::write_private_atomic(
                path,
                &crate::store::seal(&self.key, self.kind.aad, plain),
            )
            .map_err(|e| NodeError::io(self.kind.what, e)),
            Backend::Vault(v) => vault_store::lock(v)
                .put_bytes(self.kind.vault_file, plain)
                .map_err(|source| NodeError::Vault { context: self.kind.what, source }),
        }
    }
}
