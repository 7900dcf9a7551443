//! The manifest: a file's name, size and type, carried encrypted in the blob's header.

use crate::ContentError;
use samizdat_wire::{Reader, Writer};

/// Bytes of the blob header that holds the manifest (always this size, zero padded).
pub const HEADER_LEN: usize = 4096;
const MAX_NAME: usize = 1024;
const MAX_MIME: usize = 255;

/// What the receiver learns about a file once it holds the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Suggested file name (a base name; receivers must sanitise before use).
    pub name: String,
    /// File size in bytes.
    pub size: u64,
    /// Media type, e.g. `application/octet-stream`.
    pub mime: String,
}

impl Manifest {
    /// Encodes the manifest into a zero-padded header of [`HEADER_LEN`] bytes.
    pub fn to_header(&self) -> Result<Vec<u8>, ContentError> {
        if self.name.len() > MAX_NAME || self.mime.len() > MAX_MIME {
            return Err(ContentError::ManifestTooLarge);
        }
        let mut out = Vec::with_capacity(HEADER_LEN);
        let mut w = Writer::new(&mut out);
        w.bytes(b"SZM1");
        w.u64(self.size);
        w.short_bytes(self.name.as_bytes());
        w.short_bytes(self.mime.as_bytes());
        out.resize(HEADER_LEN, 0);
        Ok(out)
    }

    /// Parses a decrypted header. Fails on a wrong key (the magic will not match) or garbage.
    pub fn from_header(header: &[u8]) -> Result<Manifest, ContentError> {
        let mut r = Reader::new(header);
        let bad = |_| ContentError::BadManifest;
        if r.bytes(4, "magic").map_err(bad)? != b"SZM1" {
            return Err(ContentError::BadManifest);
        }
        let size = r.u64("size").map_err(bad)?;
        let name = r.short_bytes(MAX_NAME, "name").map_err(bad)?;
        let mime = r.short_bytes(MAX_MIME, "mime").map_err(bad)?;
        let name = String::from_utf8(name.to_vec()).map_err(|_| ContentError::BadManifest)?;
        let mime = String::from_utf8(mime.to_vec()).map_err(|_| ContentError::BadManifest)?;
        Ok(Manifest { name, size, mime })
    }

    /// The name reduced to a safe base name (no directories, no control characters).
    pub fn safe_name(&self) -> String {
        let base = self.name.rsplit(['/', '\\']).next().unwrap_or("");
        let clean: String = base.chars().filter(|c| !c.is_control()).collect();
        match clean.as_str() {
            "" | "." | ".." => "download".to_owned(),
            _ => clean,
        }
    }
}
