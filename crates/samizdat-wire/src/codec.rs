//! Bounds-checked primitive readers and writers.

/// Why a message could not be decoded. Every variant means "the peer sent garbage": the
/// session that received it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the field `field` was complete.
    #[error("message truncated while reading {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// The message tag is not one this version knows.
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    /// A length or count exceeds the protocol's limit for that field.
    #[error("{field} is {len}, above the limit of {max}")]
    TooLong {
        /// The field whose length is out of bounds.
        field: &'static str,
        /// The length found.
        len: usize,
        /// The largest allowed.
        max: usize,
    },
    /// Bytes were left over after a complete message.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A text field is not valid UTF-8 or contains forbidden characters.
    #[error("{field} is not valid printable text")]
    BadText {
        /// The offending field.
        field: &'static str,
    },
    /// A field holds a value that is structurally invalid (e.g. a zero count).
    #[error("invalid {field}")]
    Invalid {
        /// The offending field.
        field: &'static str,
    },
}

/// A cursor over untrusted bytes; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Takes exactly `n` bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, field)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a `u16`-length-prefixed byte string of at most `max` bytes.
    pub fn short_bytes(
        &mut self,
        max: usize,
        field: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.bytes(len, field)
    }

    /// Reads a `u32`-length-prefixed byte string of at most `max` bytes.
    pub fn long_bytes(&mut self, max: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)? as usize;
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        self.bytes(len, field)
    }

    /// Reads a length-prefixed printable ASCII string (no control characters).
    pub fn text(&mut self, max: usize, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.short_bytes(max, field)?;
        if !raw.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(DecodeError::BadText { field });
        }
        // All bytes are printable ASCII, so this cannot fail; map anyway rather than unwrap.
        String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::BadText { field })
    }

    /// Fails unless the whole input was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::TrailingBytes(self.buf.len())) }
    }
}

/// Appends encoded fields to a buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    /// Appends to `buf`.
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Writer { buf }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }

    /// Appends a `u16`-length-prefixed byte string, truncated to `u16::MAX` bytes.
    pub fn short_bytes(&mut self, b: &[u8]) {
        let b = &b[..b.len().min(usize::from(u16::MAX))];
        self.u16(b.len() as u16);
        self.bytes(b);
    }

    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// Appends a `u32`-length-prefixed byte string.
    pub fn long_bytes(&mut self, b: &[u8]) {
        self.u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
        self.bytes(b);
    }
}
