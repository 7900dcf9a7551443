//! The crate's one error type.

/// Everything that can go wrong in the DHT: malformed bytes, records that fail their checks,
/// store limits, and local API misuse. Errors caused by a peer are reasons to drop that peer's
/// message (and rank the peer down), never to panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DhtError {
    /// The input ended before `what` was complete.
    #[error("truncated input while reading {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// A complete message was followed by extra bytes.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// A tag byte names no known variant.
    #[error("unknown {what} tag {tag:#04x}")]
    UnknownTag {
        /// The kind of tag (message, request, response, ...).
        what: &'static str,
        /// The offending byte.
        tag: u8,
    },
    /// A length-prefixed field or a list is longer than its limit.
    #[error("{what} too long: {len} > {max}")]
    TooLong {
        /// The field or list.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A byte that must be a boolean (0 or 1) is neither.
    #[error("bad boolean byte {0:#04x}")]
    BadBool(u8),
    /// A contact's address is empty or not UTF-8.
    #[error("contact address is empty or not UTF-8")]
    BadAddress,
    /// A contact's proof of work does not reach the required difficulty.
    #[error("contact fails the proof of work at difficulty {0}")]
    BadProofOfWork(u8),
    /// A record's signature does not verify under its key.
    #[error("record signature does not verify")]
    BadSignature,
    /// A record's expiry time has passed.
    #[error("record expired at {expires_at} (now {now})")]
    Expired {
        /// The record's expiry, in Unix seconds.
        expires_at: u64,
        /// The current time, in Unix seconds.
        now: u64,
    },
    /// A record claims to live longer than the store allows.
    #[error("record expires too far ahead ({expires_at} > {limit})")]
    ExpiryTooFar {
        /// The record's expiry, in Unix seconds.
        expires_at: u64,
        /// The latest expiry the store accepts now.
        limit: u64,
    },
    /// A mutable record does not advance the stored sequence number.
    #[error("stale sequence number {offered} (stored {stored})")]
    StaleSequence {
        /// The sequence number offered.
        offered: u64,
        /// The sequence number already stored.
        stored: u64,
    },
    /// The source of a record has used up its quota in the store.
    #[error("per-source quota of {0} records exceeded")]
    QuotaExceeded(usize),
    /// The store (or a per-key provider list) is full.
    #[error("store full ({0} entries)")]
    StoreFull(usize),
    /// A record, key or signer does not match what it must match.
    #[error("key mismatch: {0}")]
    KeyMismatch(&'static str),
    /// A response does not answer the request it claims to answer.
    #[error("response does not match the request")]
    UnexpectedResponse,
    /// Too many lookups already run.
    #[error("too many lookups in flight ({0})")]
    TooManyLookups(usize),
    /// The node knows no contact to start a lookup from.
    #[error("the routing table is empty")]
    NoContacts,
    /// Too many records owned by this node already.
    #[error("too many owned records ({0})")]
    TooManyOwned(usize),
}
