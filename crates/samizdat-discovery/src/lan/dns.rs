//! A small, strict DNS message codec: just what multicast DNS service discovery needs
//! (RFC 1035 §4 messages, RFC 6762 §18 multicast DNS fields, RFC 6763 TXT strings).
//!
//! The decoder reads untrusted datagrams from the LAN, so it is bounded everywhere and never
//! panics:
//!
//! - a message is at most [`MAX_MESSAGE_LEN`] bytes (the mDNS maximum) and holds at most
//!   [`MAX_ENTRIES`] questions and records, checked before anything is allocated;
//! - a name is at most [`MAX_NAME_LEN`] bytes in wire form, however it is spelt;
//! - compression pointers must point *strictly backwards* (before where the current run of
//!   labels began) and outside the header, and a name follows at most [`MAX_POINTERS`] of
//!   them, so pointer loops and chains are refused rather than followed;
//! - every record's data must fill its length exactly, and nothing may follow the last record.
//!
//! Known record types ([`RData`]: A, AAAA, PTR, TXT, SRV) are parsed; any other type is kept
//! as raw bytes. The encoder writes no compression pointers and refuses whatever the decoder
//! would refuse, so `decode(encode(m)) == m` for every message `encode` accepts.
//!
//! ```
//! use samizdat_discovery::lan::dns::{Message, Question, rtype, CLASS_IN};
//!
//! let query = Message {
//!     questions: vec![Question {
//!         name: "_samizdat._udp.local".parse().unwrap(),
//!         qtype: rtype::PTR,
//!         qclass: CLASS_IN,
//!     }],
//!     ..Message::default()
//! };
//! let bytes = query.encode().unwrap();
//! assert_eq!(Message::decode(&bytes).unwrap(), query);
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The largest message decoded or encoded (RFC 6762 §17: mDNS messages are at most 9000 bytes).
pub const MAX_MESSAGE_LEN: usize = 9000;
/// The most questions and records (all sections together) one message may hold.
pub const MAX_ENTRIES: usize = 256;
/// The longest name in wire form (RFC 1035 §2.3.4), length bytes and the root byte included.
pub const MAX_NAME_LEN: usize = 255;
/// The longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// The most compression pointers one name may follow.
pub const MAX_POINTERS: usize = 32;
/// The size of the fixed header.
pub const HEADER_LEN: usize = 12;

/// The class `IN`.
pub const CLASS_IN: u16 = 1;
/// The top bit of a class: "unicast response wanted" (QU) in a question, "cache flush" in a
/// record (RFC 6762 §5.4, §10.2).
pub const CLASS_TOP_BIT: u16 = 0x8000;
/// The header flag of a response (QR).
pub const FLAG_RESPONSE: u16 = 0x8000;
/// The header flag of an authoritative answer (AA); mDNS responses set it.
pub const FLAG_AUTHORITATIVE: u16 = 0x0400;

/// Record and query types.
pub mod rtype {
    /// An IPv4 address.
    pub const A: u16 = 1;
    /// A pointer to another name (DNS-SD: service type → instance).
    pub const PTR: u16 = 12;
    /// Text strings (DNS-SD: key=value pairs of an instance).
    pub const TXT: u16 = 16;
    /// An IPv6 address.
    pub const AAAA: u16 = 28;
    /// A service location: priority, weight, port, target host.
    pub const SRV: u16 = 33;
    /// Any type (queries only).
    pub const ANY: u16 = 255;
}

/// Why a DNS message or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The message is longer than [`MAX_MESSAGE_LEN`] (or than the limit the caller set).
    #[error("DNS message of {len} bytes exceeds {limit}")]
    TooLong {
        /// The message's length.
        len: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// The input ended inside the field named.
    #[error("DNS message truncated in {0}")]
    Truncated(&'static str),
    /// The header announces more than [`MAX_ENTRIES`] questions and records.
    #[error("DNS message holds {0} entries (at most {MAX_ENTRIES})")]
    TooManyEntries(usize),
    /// A label is empty, longer than [`MAX_LABEL_LEN`], or of a reserved type (0x40, 0x80).
    #[error("malformed DNS label")]
    BadLabel,
    /// A name is longer than [`MAX_NAME_LEN`] in wire form.
    #[error("DNS name longer than {MAX_NAME_LEN} bytes")]
    NameTooLong,
    /// A compression pointer points forwards, into the header or at itself, or a name follows
    /// more than [`MAX_POINTERS`] of them.
    #[error("bad DNS compression pointer")]
    BadPointer,
    /// A record's data does not have the shape its type requires.
    #[error("malformed data of a DNS record of type {rtype}")]
    BadRdata {
        /// The record's type.
        rtype: u16,
    },
    /// Bytes follow the last record.
    #[error("{0} trailing bytes after the DNS message")]
    TrailingBytes(usize),
    /// A TXT character-string is longer than 255 bytes (encoding only).
    #[error("TXT string of {0} bytes exceeds 255")]
    StringTooLong(usize),
    /// [`RData::Other`] used for a type this codec parses (encoding only): the decoder would
    /// read it back as the typed variant.
    #[error("record type {0} must use its typed variant")]
    NotCanonical(u16),
}

/// A domain name: a sequence of labels of 1 to [`MAX_LABEL_LEN`] arbitrary bytes, at most
/// [`MAX_NAME_LEN`] bytes in wire form. Only valid names can be built.
///
/// Equality (`==`) is exact, byte for byte; DNS matching ignores ASCII case, see
/// [`Name::eq_ignore_case`].
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Name {
    labels: Vec<Vec<u8>>,
}

impl Name {
    /// The root name (no labels).
    pub fn root() -> Name {
        Name::default()
    }

    /// Builds a name from its labels, most specific first.
    pub fn from_labels<I, L>(labels: I) -> Result<Name, DnsError>
    where
        I: IntoIterator<Item = L>,
        L: AsRef<[u8]>,
    {
        let mut name = Name::root();
        let mut wire = 1;
        for label in labels {
            let label = label.as_ref();
            if label.is_empty() || label.len() > MAX_LABEL_LEN {
                return Err(DnsError::BadLabel);
            }
            wire += 1 + label.len();
            if wire > MAX_NAME_LEN {
                return Err(DnsError::NameTooLong);
            }
            name.labels.push(label.to_vec());
        }
        Ok(name)
    }

    /// The labels, most specific first.
    pub fn labels(&self) -> &[Vec<u8>] {
        &self.labels
    }

    /// The length in wire form (uncompressed), at most [`MAX_NAME_LEN`].
    pub fn wire_len(&self) -> usize {
        1 + self.labels.iter().map(|l| 1 + l.len()).sum::<usize>()
    }

    /// Whether two names are the same for DNS (ASCII letters compared without case).
    pub fn eq_ignore_case(&self, other: &Name) -> bool {
        self.labels.len() == other.labels.len()
            && self.labels.iter().zip(&other.labels).all(|(a, b)| a.eq_ignore_ascii_case(b))
    }

    /// The name with `label` put in front (e.g. an instance under a service type).
    pub fn child(&self, label: &[u8]) -> Result<Name, DnsError> {
        Name::from_labels(std::iter::once(label).chain(self.labels.iter().map(Vec::as_slice)))
    }

    /// If this name is exactly one label below `parent` (ignoring case), that label.
    pub fn child_label_of(&self, parent: &Name) -> Option<&[u8]> {
        let (first, rest) = self.labels.split_first()?;
        let same = rest.len() == parent.labels.len()
            && rest.iter().zip(&parent.labels).all(|(a, b)| a.eq_ignore_ascii_case(b));
        same.then_some(first.as_slice())
    }
}

impl FromStr for Name {
    type Err = DnsError;

    /// Parses dotted text (`_samizdat._udp.local`, a final dot allowed; `""` or `"."` is the
    /// root). There are no escapes: a label parsed from text cannot contain a dot.
    fn from_str(s: &str) -> Result<Name, DnsError> {
        let s = s.strip_suffix('.').unwrap_or(s);
        if s.is_empty() {
            return Ok(Name::root());
        }
        Name::from_labels(s.split('.'))
    }
}

impl fmt::Display for Name {
    /// Dotted text; a dot, a backslash or a non-printable byte inside a label is escaped as
    /// `\DDD` (RFC 1035 §5.1 style).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.labels.is_empty() {
            return f.write_str(".");
        }
        for (i, label) in self.labels.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            for &b in label {
                if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                    write!(f, "{}", char::from(b))?;
                } else {
                    write!(f, "\\{b:03}")?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

/// One question: "which records of `qtype` does `name` have?"
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// The name asked about.
    pub name: Name,
    /// The type asked for (see [`rtype`]).
    pub qtype: u16,
    /// The class, [`CLASS_IN`], with [`CLASS_TOP_BIT`] set for a unicast-response query.
    pub qclass: u16,
}

/// The data of a record, by type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    /// An IPv4 address ([`rtype::A`]).
    A(Ipv4Addr),
    /// An IPv6 address ([`rtype::AAAA`]).
    Aaaa(Ipv6Addr),
    /// A pointer to another name ([`rtype::PTR`]).
    Ptr(Name),
    /// Character-strings of at most 255 bytes each ([`rtype::TXT`]).
    Txt(Vec<Vec<u8>>),
    /// A service location ([`rtype::SRV`]).
    Srv {
        /// Lower is tried first.
        priority: u16,
        /// Relative weight among equal priorities.
        weight: u16,
        /// The service's port.
        port: u16,
        /// The host offering it.
        target: Name,
    },
    /// Any other type, as raw bytes (names inside are not decompressed).
    Other {
        /// The record's type (not one of the typed variants').
        rtype: u16,
        /// The raw record data.
        data: Vec<u8>,
    },
}

impl RData {
    /// The record type of this data.
    pub fn rtype(&self) -> u16 {
        match self {
            RData::A(_) => rtype::A,
            RData::Aaaa(_) => rtype::AAAA,
            RData::Ptr(_) => rtype::PTR,
            RData::Txt(_) => rtype::TXT,
            RData::Srv { .. } => rtype::SRV,
            RData::Other { rtype, .. } => *rtype,
        }
    }
}

/// A resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owner name.
    pub name: Name,
    /// The class, [`CLASS_IN`], with [`CLASS_TOP_BIT`] set for a unique ("cache flush")
    /// record.
    pub class: u16,
    /// Time to live, in seconds.
    pub ttl: u32,
    /// The typed data.
    pub data: RData,
}

/// A DNS message: header fields and the four sections.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The query id (0 in multicast DNS).
    pub id: u16,
    /// The header flags, raw (see [`FLAG_RESPONSE`], [`Message::opcode`], [`Message::rcode`]).
    pub flags: u16,
    /// The question section.
    pub questions: Vec<Question>,
    /// The answer section (in an mDNS query: the querier's known answers).
    pub answers: Vec<Record>,
    /// The authority section.
    pub authorities: Vec<Record>,
    /// The additional section.
    pub additionals: Vec<Record>,
}

impl Message {
    /// Whether the QR flag marks this message as a response.
    pub fn is_response(&self) -> bool {
        self.flags & FLAG_RESPONSE != 0
    }

    /// The 4-bit opcode (0 for a standard query; mDNS uses no other).
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0xf) as u8
    }

    /// The 4-bit response code (0: no error).
    pub fn rcode(&self) -> u8 {
        (self.flags & 0xf) as u8
    }

    /// Every record of the answer, authority and additional sections, in order.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.answers.iter().chain(&self.authorities).chain(&self.additionals)
    }

    /// The wire form, without compression. Refuses anything [`Message::decode`] would refuse:
    /// more than [`MAX_ENTRIES`] entries, a result longer than [`MAX_MESSAGE_LEN`], a TXT
    /// string longer than 255 bytes, [`RData::Other`] with a typed variant's type.
    pub fn encode(&self) -> Result<Vec<u8>, DnsError> {
        let entries = self.questions.len()
            + self.answers.len()
            + self.authorities.len()
            + self.additionals.len();
        if entries > MAX_ENTRIES {
            return Err(DnsError::TooManyEntries(entries));
        }
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
        // Each count is at most MAX_ENTRIES, so it fits a u16.
        for n in [
            self.questions.len(),
            self.answers.len(),
            self.authorities.len(),
            self.additionals.len(),
        ] {
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        for q in &self.questions {
            put_name(&mut out, &q.name);
            out.extend_from_slice(&q.qtype.to_be_bytes());
            out.extend_from_slice(&q.qclass.to_be_bytes());
        }
        for r in self.records() {
            put_record(&mut out, r)?;
            if out.len() > MAX_MESSAGE_LEN {
                return Err(DnsError::TooLong { len: out.len(), limit: MAX_MESSAGE_LEN });
            }
        }
        if out.len() > MAX_MESSAGE_LEN {
            return Err(DnsError::TooLong { len: out.len(), limit: MAX_MESSAGE_LEN });
        }
        Ok(out)
    }

    /// Parses a message strictly (see the [module docs](self) for every bound).
    pub fn decode(bytes: &[u8]) -> Result<Message, DnsError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(DnsError::TooLong { len: bytes.len(), limit: MAX_MESSAGE_LEN });
        }
        let mut d = Decoder { msg: bytes, pos: 0 };
        let id = d.u16("header")?;
        let flags = d.u16("header")?;
        let qd = usize::from(d.u16("header")?);
        let an = usize::from(d.u16("header")?);
        let ns = usize::from(d.u16("header")?);
        let ar = usize::from(d.u16("header")?);
        let entries = qd + an + ns + ar;
        if entries > MAX_ENTRIES {
            return Err(DnsError::TooManyEntries(entries));
        }
        // A question takes at least 5 bytes, a record at least 11: refuse impossible counts
        // before allocating for them.
        if HEADER_LEN + qd * 5 + (an + ns + ar) * 11 > bytes.len() {
            return Err(DnsError::Truncated("sections"));
        }
        let mut msg = Message { id, flags, ..Message::default() };
        msg.questions.reserve_exact(qd);
        for _ in 0..qd {
            let name = d.name()?;
            let qtype = d.u16("question")?;
            let qclass = d.u16("question")?;
            msg.questions.push(Question { name, qtype, qclass });
        }
        for (count, section) in
            [(an, &mut msg.answers), (ns, &mut msg.authorities), (ar, &mut msg.additionals)]
        {
            section.reserve_exact(count);
            for _ in 0..count {
                section.push(d.record()?);
            }
        }
        if d.pos != bytes.len() {
            return Err(DnsError::TrailingBytes(bytes.len() - d.pos));
        }
        Ok(msg)
    }
}

fn put_name(out: &mut Vec<u8>, name: &Name) {
    for label in &name.labels {
        // Labels are 1..=63 bytes by construction.
        out.push(label.len() as u8);
        out.extend_from_slice(label);
    }
    out.push(0);
}

fn put_record(out: &mut Vec<u8>, r: &Record) -> Result<(), DnsError> {
    put_name(out, &r.name);
    out.extend_from_slice(&r.data.rtype().to_be_bytes());
    out.extend_from_slice(&r.class.to_be_bytes());
    out.extend_from_slice(&r.ttl.to_be_bytes());
    let len_at = out.len();
    out.extend_from_slice(&[0, 0]);
    match &r.data {
        RData::A(a) => out.extend_from_slice(&a.octets()),
        RData::Aaaa(a) => out.extend_from_slice(&a.octets()),
        RData::Ptr(name) => put_name(out, name),
        RData::Txt(strings) => {
            for s in strings {
                let len = u8::try_from(s.len()).map_err(|_| DnsError::StringTooLong(s.len()))?;
                out.push(len);
                out.extend_from_slice(s);
                if out.len() > MAX_MESSAGE_LEN {
                    return Err(DnsError::TooLong { len: out.len(), limit: MAX_MESSAGE_LEN });
                }
            }
        }
        RData::Srv { priority, weight, port, target } => {
            out.extend_from_slice(&priority.to_be_bytes());
            out.extend_from_slice(&weight.to_be_bytes());
            out.extend_from_slice(&port.to_be_bytes());
            put_name(out, target);
        }
        RData::Other { rtype: t, data } => {
            if matches!(*t, rtype::A | rtype::AAAA | rtype::PTR | rtype::TXT | rtype::SRV) {
                return Err(DnsError::NotCanonical(*t));
            }
            if data.len() > MAX_MESSAGE_LEN {
                return Err(DnsError::TooLong { len: data.len(), limit: MAX_MESSAGE_LEN });
            }
            out.extend_from_slice(data);
        }
    }
    let rdlen = out.len() - len_at - 2;
    let rdlen = u16::try_from(rdlen)
        .map_err(|_| DnsError::TooLong { len: rdlen, limit: usize::from(u16::MAX) })?;
    out[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    Ok(())
}

struct Decoder<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], DnsError> {
        let end = self.pos.checked_add(n).ok_or(DnsError::Truncated(what))?;
        let bytes = self.msg.get(self.pos..end).ok_or(DnsError::Truncated(what))?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DnsError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DnsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, DnsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a name at the cursor, following compression pointers; leaves the cursor after
    /// the name's bytes at its first position (after the first pointer, if any).
    fn name(&mut self) -> Result<Name, DnsError> {
        let mut labels = Vec::new();
        let mut wire = 1usize;
        let mut at = self.pos;
        // Where the current run of labels began: a pointer must point strictly before it, so
        // every jump goes backwards and no loop is possible.
        let mut run_start = at;
        let mut resume = None;
        let mut jumps = 0usize;
        loop {
            let len = *self.msg.get(at).ok_or(DnsError::Truncated("name"))?;
            match len & 0xc0 {
                0x00 if len == 0 => {
                    at += 1;
                    break;
                }
                0x00 => {
                    let n = usize::from(len);
                    wire += 1 + n;
                    if wire > MAX_NAME_LEN {
                        return Err(DnsError::NameTooLong);
                    }
                    let label =
                        self.msg.get(at + 1..at + 1 + n).ok_or(DnsError::Truncated("label"))?;
                    labels.push(label.to_vec());
                    at += 1 + n;
                }
                0xc0 => {
                    let low = *self.msg.get(at + 1).ok_or(DnsError::Truncated("pointer"))?;
                    let target = usize::from(len & 0x3f) << 8 | usize::from(low);
                    jumps += 1;
                    if target < HEADER_LEN || target >= run_start || jumps > MAX_POINTERS {
                        return Err(DnsError::BadPointer);
                    }
                    if resume.is_none() {
                        resume = Some(at + 2);
                    }
                    at = target;
                    run_start = target;
                }
                _ => return Err(DnsError::BadLabel),
            }
        }
        self.pos = resume.unwrap_or(at);
        Ok(Name { labels })
    }

    fn record(&mut self) -> Result<Record, DnsError> {
        let name = self.name()?;
        let rtype = self.u16("record header")?;
        let class = self.u16("record header")?;
        let ttl = self.u32("record header")?;
        let rdlen = usize::from(self.u16("record header")?);
        let start = self.pos;
        let end = start + rdlen;
        if end > self.msg.len() {
            return Err(DnsError::Truncated("record data"));
        }
        let bad = DnsError::BadRdata { rtype };
        let data = match rtype {
            rtype::A => {
                let b: [u8; 4] = self.take(rdlen, "record data")?.try_into().map_err(|_| bad)?;
                RData::A(Ipv4Addr::from(b))
            }
            rtype::AAAA => {
                let b: [u8; 16] = self.take(rdlen, "record data")?.try_into().map_err(|_| bad)?;
                RData::Aaaa(Ipv6Addr::from(b))
            }
            rtype::PTR => RData::Ptr(self.name()?),
            rtype::SRV => {
                if rdlen < 7 {
                    return Err(bad);
                }
                let priority = self.u16("SRV")?;
                let weight = self.u16("SRV")?;
                let port = self.u16("SRV")?;
                let target = self.name()?;
                RData::Srv { priority, weight, port, target }
            }
            rtype::TXT => {
                let mut strings = Vec::new();
                while self.pos < end {
                    let n = usize::from(self.u8("TXT")?);
                    if self.pos + n > end {
                        return Err(bad);
                    }
                    strings.push(self.take(n, "TXT")?.to_vec());
                }
                RData::Txt(strings)
            }
            _ => RData::Other { rtype, data: self.take(rdlen, "record data")?.to_vec() },
        };
        // A name inside the data must end exactly where the data does.
        if self.pos != end {
            return Err(DnsError::BadRdata { rtype });
        }
        Ok(Record { name, class, ttl, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name(s: &str) -> Name {
        s.parse().expect("valid name")
    }

    /// A response as a typical responder compresses it: PTR answer, SRV and TXT additionals.
    fn compressed_response() -> Vec<u8> {
        let mut m = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 2];
        // 12: _samizdat._udp.local
        m.extend_from_slice(b"\x09_samizdat\x04_udp\x05local\x00");
        m.extend_from_slice(&[0, 12, 0, 1, 0, 0, 0x11, 0x94]);
        // rdata: "abc" + pointer to 12
        m.extend_from_slice(&[0, 6, 3, b'a', b'b', b'c', 0xc0, 12]);
        let instance = 12 + 22 + 10; // offset of "abc" label
        m.extend_from_slice(&[0xc0, instance as u8, 0, 33, 0x80, 1, 0, 0, 0, 120]);
        // SRV: prio 0 weight 0 port 7070, target "abc" + pointer to "local" (offset 12+15)
        m.extend_from_slice(&[0, 12, 0, 0, 0, 0, 0x1b, 0x9e, 3, b'a', b'b', b'c', 0xc0, 27]);
        m.extend_from_slice(&[0xc0, instance as u8, 0, 16, 0x80, 1, 0, 0, 0x11, 0x94]);
        m.extend_from_slice(&[0, 8, 3, b'a', b'=', b'1', 3, b'b', b'=', b'2']);
        m
    }

    #[test]
    fn decodes_a_compressed_response() {
        let m = Message::decode(&compressed_response()).expect("decodes");
        assert!(m.is_response());
        assert_eq!(m.opcode(), 0);
        assert_eq!(m.rcode(), 0);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.additionals.len(), 2);
        assert_eq!(m.answers[0].name, name("_samizdat._udp.local"));
        assert_eq!(m.answers[0].data, RData::Ptr(name("abc._samizdat._udp.local")));
        assert_eq!(
            m.additionals[0].data,
            RData::Srv { priority: 0, weight: 0, port: 7070, target: name("abc.local") }
        );
        assert_eq!(m.additionals[0].class, CLASS_IN | CLASS_TOP_BIT);
        assert_eq!(m.additionals[1].data, RData::Txt(vec![b"a=1".to_vec(), b"b=2".to_vec()]));
        // Re-encoded without compression, it decodes to the same message.
        let again = Message::decode(&m.encode().expect("encodes")).expect("decodes");
        assert_eq!(again, m);
    }

    #[test]
    fn every_prefix_is_refused() {
        let bytes = compressed_response();
        for n in 0..bytes.len() {
            assert!(Message::decode(&bytes[..n]).is_err(), "prefix {n}");
        }
    }

    fn one_question(name_bytes: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(name_bytes);
        m.extend_from_slice(&[0, 12, 0, 1]);
        m
    }

    #[test]
    fn pointer_loops_and_forward_pointers_are_refused() {
        // A pointer to itself.
        assert_eq!(Message::decode(&one_question(&[0xc0, 12])), Err(DnsError::BadPointer));
        // A label, then a pointer back to that label: a loop.
        assert_eq!(Message::decode(&one_question(&[1, b'a', 0xc0, 12])), Err(DnsError::BadPointer));
        // A pointer forwards.
        assert_eq!(Message::decode(&one_question(&[0xc0, 14, 0, 0])), Err(DnsError::BadPointer));
        // A pointer into the header.
        assert_eq!(Message::decode(&one_question(&[0xc0, 2])), Err(DnsError::BadPointer));
        // Two names pointing at each other: the second may point at the first, not back.
        let mut m = vec![0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[1, b'a', 0xc0, 22]); // 12: "a" -> 22 (forward)
        m.extend_from_slice(&[0, 12, 0, 1]);
        m.extend_from_slice(&[1, b'b', 0xc0, 12]); // 20..: "b" -> 12
        m.extend_from_slice(&[0, 12, 0, 1]);
        assert_eq!(Message::decode(&m), Err(DnsError::BadPointer));
    }

    #[test]
    fn long_chains_and_long_names_are_refused() {
        // A chain of pointers, each to the one before, ending at a root name at offset 12.
        let mut m = vec![0u8; HEADER_LEN];
        m.push(0);
        let mut prev = HEADER_LEN;
        for _ in 0..=MAX_POINTERS {
            let at = m.len();
            m.extend_from_slice(&[0xc0 | (prev >> 8) as u8, prev as u8]);
            prev = at;
        }
        // The last pointer needs MAX_POINTERS + 1 jumps: refused.
        let mut d = Decoder { msg: &m, pos: prev };
        assert_eq!(d.name(), Err(DnsError::BadPointer));
        // The one before needs MAX_POINTERS: accepted, and the cursor moves past it only.
        let mut d = Decoder { msg: &m, pos: prev - 2 };
        assert_eq!(d.name(), Ok(Name::root()));
        assert_eq!(d.pos, prev);

        // 128 one-byte labels make a 257-byte name.
        let mut long = Vec::new();
        for _ in 0..128 {
            long.extend_from_slice(&[1, b'x']);
        }
        long.push(0);
        assert_eq!(Message::decode(&one_question(&long)), Err(DnsError::NameTooLong));
        // A name that reaches 256 bytes only through a pointer is refused too.
        let mut m = one_question(&long[2..]); // 127 labels: 255 bytes, fine
        assert!(Message::decode(&m).is_ok());
        m[5] = 2; // a second question: "y" + a pointer to the first name
        m.extend_from_slice(&[1, b'y', 0xc0, 12, 0, 12, 0, 1]);
        assert_eq!(Message::decode(&m), Err(DnsError::NameTooLong));
        assert!(Name::from_labels(std::iter::repeat_n("x", 127)).is_ok());
        assert_eq!(Name::from_labels(std::iter::repeat_n("x", 128)), Err(DnsError::NameTooLong));
    }

    #[test]
    fn reserved_label_types_and_bad_counts_are_refused() {
        assert_eq!(Message::decode(&one_question(&[0x40, 0])), Err(DnsError::BadLabel));
        assert_eq!(Message::decode(&one_question(&[0x80, 0])), Err(DnsError::BadLabel));
        let mut m = one_question(&[0]);
        m[4] = 0xff; // 65280+ questions
        assert!(matches!(Message::decode(&m), Err(DnsError::TooManyEntries(_))));
        let mut m = one_question(&[0]);
        m[5] = 200; // 200 questions in 17 bytes
        assert_eq!(Message::decode(&m), Err(DnsError::Truncated("sections")));
        let mut m = one_question(&[0]);
        m.push(0);
        assert_eq!(Message::decode(&m), Err(DnsError::TrailingBytes(1)));
        assert!(matches!(
            Message::decode(&vec![0; MAX_MESSAGE_LEN + 1]),
            Err(DnsError::TooLong { .. })
        ));
    }

    #[test]
    fn record_data_must_fit_exactly() {
        let record = |rtype: u16, data: &[u8]| {
            let mut m = vec![0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0];
            m.extend_from_slice(&rtype.to_be_bytes());
            m.extend_from_slice(&[0, 1, 0, 0, 0, 0]);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(data);
            Message::decode(&m)
        };
        assert!(record(rtype::A, &[1, 2, 3, 4]).is_ok());
        assert_eq!(record(rtype::A, &[1, 2, 3]), Err(DnsError::BadRdata { rtype: rtype::A }));
        assert_eq!(record(rtype::AAAA, &[0; 4]), Err(DnsError::BadRdata { rtype: rtype::AAAA }));
        // A PTR whose name is shorter or longer than the data.
        assert_eq!(record(rtype::PTR, &[0, 0]), Err(DnsError::BadRdata { rtype: rtype::PTR }));
        assert!(record(rtype::PTR, &[1, b'a']).is_err());
        // A TXT string running past the data.
        assert_eq!(record(rtype::TXT, &[3, b'a']), Err(DnsError::BadRdata { rtype: rtype::TXT }));
        assert!(record(rtype::TXT, &[]).is_ok());
        assert_eq!(record(rtype::SRV, &[0; 6]), Err(DnsError::BadRdata { rtype: rtype::SRV }));
        assert!(record(rtype::SRV, &[0; 7]).is_ok());
        assert_eq!(
            record(47, &[1, 2, 3]).map(|m| m.answers[0].data.clone()),
            Ok(RData::Other { rtype: 47, data: vec![1, 2, 3] })
        );
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would() {
        let rec = |data| Message {
            answers: vec![Record { name: Name::root(), class: CLASS_IN, ttl: 0, data }],
            ..Message::default()
        };
        assert_eq!(rec(RData::Txt(vec![vec![0; 256]])).encode(), Err(DnsError::StringTooLong(256)));
        assert_eq!(
            rec(RData::Other { rtype: rtype::PTR, data: vec![0] }).encode(),
            Err(DnsError::NotCanonical(rtype::PTR))
        );
        assert!(matches!(
            rec(RData::Txt(vec![vec![0; 255]; 40])).encode(),
            Err(DnsError::TooLong { .. })
        ));
        let q = Question { name: Name::root(), qtype: 1, qclass: 1 };
        let many = Message { questions: vec![q; MAX_ENTRIES + 1], ..Message::default() };
        assert_eq!(many.encode(), Err(DnsError::TooManyEntries(MAX_ENTRIES + 1)));
    }

    #[test]
    fn names_parse_print_and_compare() {
        let n = name("_Samizdat._udp.local.");
        assert_eq!(n.to_string(), "_Samizdat._udp.local");
        assert_eq!(n.wire_len(), 22);
        assert!(n.eq_ignore_case(&name("_samizdat._UDP.local")));
        assert_ne!(n, name("_samizdat._udp.local"));
        let child = n.child(b"Box.1").expect("valid");
        assert_eq!(child.to_string(), "Box\\0461._Samizdat._udp.local");
        assert_eq!(child.child_label_of(&name("_samizdat._udp.LOCAL")), Some(&b"Box.1"[..]));
        assert_eq!(n.child_label_of(&n), None);
        assert_eq!(name(""), Name::root());
        assert_eq!(Name::root().to_string(), ".");
        assert_eq!("a..b".parse::<Name>(), Err(DnsError::BadLabel));
        assert_eq!("x".repeat(64).parse::<Name>(), Err(DnsError::BadLabel));
    }

    fn arb_name() -> impl Strategy<Value = Name> {
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..20), 0..5)
            .prop_map(|labels| Name::from_labels(labels).expect("at most 101 bytes"))
    }

    fn arb_rdata() -> impl Strategy<Value = RData> {
        prop_oneof![
            any::<[u8; 4]>().prop_map(|b| RData::A(b.into())),
            any::<[u8; 16]>().prop_map(|b| RData::Aaaa(b.into())),
            arb_name().prop_map(RData::Ptr),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..4)
                .prop_map(RData::Txt),
            (any::<u16>(), any::<u16>(), any::<u16>(), arb_name()).prop_map(
                |(priority, weight, port, target)| RData::Srv { priority, weight, port, target }
            ),
            (any::<u16>(), proptest::collection::vec(any::<u8>(), 0..40))
                .prop_filter("not a typed variant", |(t, _)| {
                    !matches!(*t, rtype::A | rtype::AAAA | rtype::PTR | rtype::TXT | rtype::SRV)
                })
                .prop_map(|(rtype, data)| RData::Other { rtype, data }),
        ]
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (arb_name(), any::<u16>(), any::<u32>(), arb_rdata())
            .prop_map(|(name, class, ttl, data)| Record { name, class, ttl, data })
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        let question = (arb_name(), any::<u16>(), any::<u16>())
            .prop_map(|(name, qtype, qclass)| Question { name, qtype, qclass });
        (
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(question, 0..4),
            proptest::collection::vec(arb_record(), 0..4),
            proptest::collection::vec(arb_record(), 0..3),
            proptest::collection::vec(arb_record(), 0..4),
        )
            .prop_map(|(id, flags, questions, answers, authorities, additionals)| {
                Message { id, flags, questions, answers, authorities, additionals }
            })
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1500)) {
            if let Ok(m) = Message::decode(&bytes) {
                // Whatever decodes re-encodes (if it still fits) to the same message.
                if let Ok(again) = m.encode() {
                    prop_assert_eq!(Message::decode(&again), Ok(m));
                }
            }
        }

        #[test]
        fn mutated_responses_never_panic(pos in 0usize..200, val in any::<u8>(), cut in 0usize..200) {
            let mut bytes = compressed_response();
            let len = bytes.len();
            bytes[pos % len] = val;
            bytes.truncate(cut.max(12));
            let _ = Message::decode(&bytes);
        }

        #[test]
        fn encode_decode_roundtrip(m in arb_message()) {
            let bytes = m.encode().expect("small messages encode");
            prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
            prop_assert_eq!(Message::decode(&bytes), Ok(m));
        }
    }
}
