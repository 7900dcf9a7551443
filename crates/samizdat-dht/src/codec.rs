//! The compact binary codec of DHT messages.
//!
//! Every message is `kind (1) || request id (8, big-endian) || body`. Lists and variable fields
//! are length-prefixed and bounded; decoding is strict (unknown tags, over-long fields and
//! trailing bytes are errors) and never panics. Decoding parses only: proofs of work and
//! signatures are checked by the state machines, which know the configured difficulty and the
//! time.
//!
//! ```
//! use samizdat_dht::codec::{DhtMessage, DhtRequest, RequestId, decode, encode};
//! let msg = DhtMessage::Request {
//!     id: RequestId(7),
//!     request: DhtRequest::FindNode { target: samizdat_identity::NodeId([1; 32]) },
//! };
//! assert_eq!(decode(&encode(&msg)).unwrap(), msg);
//! ```

use crate::DhtError;
use crate::contact::{Contact, MAX_ADDRESS_LEN};
use crate::record::{MAX_SALT_LEN, MAX_VALUE_LEN, ProviderRecord, SignedRecord};
use samizdat_identity::NodeId;

/// The most contacts one message may carry (the behaviour accepts at most `k` of them).
pub const MAX_CONTACTS: usize = 32;
/// The most provider records one message may carry.
pub const MAX_PROVIDERS: usize = 20;

/// Pairs a response with its request. Chosen by the requester; opaque to the responder.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// A DHT request.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DhtRequest {
    /// Are you alive?
    Ping,
    /// The contacts you know closest to `target`.
    FindNode {
        /// The ID looked up.
        target: NodeId,
    },
    /// The mutable record stored under `key`, or closer contacts.
    FindValue {
        /// The record key.
        key: NodeId,
    },
    /// The providers stored under `key`, and closer contacts.
    GetProviders {
        /// The provided key.
        key: NodeId,
    },
    /// Store this mutable record.
    Store {
        /// The record.
        record: SignedRecord,
    },
    /// Store this provider record.
    AddProvider {
        /// The record.
        record: ProviderRecord,
    },
}

/// A DHT response.
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum DhtResponse {
    /// Answers [`DhtRequest::Ping`].
    Pong,
    /// Answers [`DhtRequest::FindNode`].
    Nodes {
        /// Contacts closer to the target.
        closer: Vec<Contact>,
    },
    /// Answers [`DhtRequest::FindValue`].
    Value {
        /// The record, if stored.
        record: Option<SignedRecord>,
        /// Contacts closer to the key.
        closer: Vec<Contact>,
    },
    /// Answers [`DhtRequest::GetProviders`].
    Providers {
        /// Provider records stored for the key.
        providers: Vec<ProviderRecord>,
        /// Contacts closer to the key.
        closer: Vec<Contact>,
    },
    /// Answers [`DhtRequest::Store`] and [`DhtRequest::AddProvider`].
    Stored {
        /// Whether the record was accepted.
        accepted: bool,
    },
}

/// A DHT message as it travels: a request or a response, with its request id.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DhtMessage {
    /// A request.
    Request {
        /// Chosen by the requester.
        id: RequestId,
        /// The request.
        request: DhtRequest,
    },
    /// A response.
    Response {
        /// The id of the request answered.
        id: RequestId,
        /// The response.
        response: DhtResponse,
    },
}

/// Encodes a message.
///
/// Fields longer than the codec's limits (which the constructors of contacts and records
/// enforce) are truncated so that the output always decodes.
pub fn encode(msg: &DhtMessage) -> Vec<u8> {
    let mut w = Writer::default();
    match msg {
        DhtMessage::Request { id, request } => {
            w.u8(1);
            w.u64(id.0);
            match request {
                DhtRequest::Ping => w.u8(0),
                DhtRequest::FindNode { target } => {
                    w.u8(1);
                    w.bytes(&target.0);
                }
                DhtRequest::FindValue { key } => {
                    w.u8(2);
                    w.bytes(&key.0);
                }
                DhtRequest::GetProviders { key } => {
                    w.u8(3);
                    w.bytes(&key.0);
                }
                DhtRequest::Store { record } => {
                    w.u8(4);
                    w.record(record);
                }
                DhtRequest::AddProvider { record } => {
                    w.u8(5);
                    w.provider(record);
                }
            }
        }
        DhtMessage::Response { id, response } => {
            w.u8(2);
            w.u64(id.0);
            match response {
                DhtResponse::Pong => w.u8(0),
                DhtResponse::Nodes { closer } => {
                    w.u8(1);
                    w.contacts(closer);
                }
                DhtResponse::Value { record, closer } => {
                    w.u8(2);
                    match record {
                        None => w.u8(0),
                        Some(r) => {
                            w.u8(1);
                            w.record(r);
                        }
                    }
                    w.contacts(closer);
                }
                DhtResponse::Providers { providers, closer } => {
                    w.u8(3);
                    let n = providers.len().min(MAX_PROVIDERS);
                    w.u8(n as u8);
                    for p in &providers[..n] {
                        w.provider(p);
                    }
                    w.contacts(closer);
                }
                DhtResponse::Stored { accepted } => {
                    w.u8(4);
                    w.u8(u8::from(*accepted));
                }
            }
        }
    }
    w.finish()
}

/// Decodes one message, strictly.
pub fn decode(bytes: &[u8]) -> Result<DhtMessage, DhtError> {
    let mut r = Reader { buf: bytes };
    let kind = r.u8("message kind")?;
    let id = RequestId(r.u64("request id")?);
    let msg = match kind {
        1 => {
            let request = match r.u8("request tag")? {
                0 => DhtRequest::Ping,
                1 => DhtRequest::FindNode { target: r.node_id()? },
                2 => DhtRequest::FindValue { key: r.node_id()? },
                3 => DhtRequest::GetProviders { key: r.node_id()? },
                4 => DhtRequest::Store { record: r.record()? },
                5 => DhtRequest::AddProvider { record: r.provider()? },
                tag => return Err(DhtError::UnknownTag { what: "request", tag }),
            };
            DhtMessage::Request { id, request }
        }
        2 => {
            let response = match r.u8("response tag")? {
                0 => DhtResponse::Pong,
                1 => DhtResponse::Nodes { closer: r.contacts()? },
                2 => {
                    let record = if r.bool()? { Some(r.record()?) } else { None };
                    DhtResponse::Value { record, closer: r.contacts()? }
                }
                3 => {
                    let n = r.u8("provider count")? as usize;
                    if n > MAX_PROVIDERS {
                        return Err(DhtError::TooLong {
                            what: "provider list",
                            len: n,
                            max: MAX_PROVIDERS,
                        });
                    }
                    let mut providers = Vec::with_capacity(n);
                    for _ in 0..n {
                        providers.push(r.provider()?);
                    }
                    DhtResponse::Providers { providers, closer: r.contacts()? }
                }
                4 => DhtResponse::Stored { accepted: r.bool()? },
                tag => return Err(DhtError::UnknownTag { what: "response", tag }),
            };
            DhtMessage::Response { id, response }
        }
        tag => return Err(DhtError::UnknownTag { what: "message", tag }),
    };
    if !r.buf.is_empty() {
        return Err(DhtError::TrailingBytes(r.buf.len()));
    }
    Ok(msg)
}

/// A byte writer shared by the codec and the canonical signing encodings.
#[derive(Default)]
pub(crate) struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.out.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b);
    }
    pub(crate) fn contact(&mut self, c: &Contact) {
        self.bytes(c.public_key());
        self.u64(c.pow_nonce());
        let addr = &c.address().as_bytes()[..c.address().len().min(MAX_ADDRESS_LEN)];
        self.u8(addr.len() as u8);
        self.bytes(addr);
    }
    fn contacts(&mut self, cs: &[Contact]) {
        let n = cs.len().min(MAX_CONTACTS);
        self.u8(n as u8);
        for c in &cs[..n] {
            self.contact(c);
        }
    }
    fn record(&mut self, r: &SignedRecord) {
        self.bytes(&r.public_key);
        let salt = &r.salt[..r.salt.len().min(MAX_SALT_LEN)];
        self.u8(salt.len() as u8);
        self.bytes(salt);
        self.u64(r.seq);
        self.u64(r.expires_at);
        let value = &r.value[..r.value.len().min(MAX_VALUE_LEN)];
        self.u16(value.len() as u16);
        self.bytes(value);
        self.bytes(&r.signature);
    }
    fn provider(&mut self, p: &ProviderRecord) {
        self.bytes(&p.key.0);
        self.contact(&p.provider);
        self.u64(p.expires_at);
        self.bytes(&p.signature);
    }
    pub(crate) fn finish(self) -> Vec<u8> {
        self.out
    }
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DhtError> {
        if self.buf.len() < n {
            return Err(DhtError::Truncated { what });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DhtError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, DhtError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, DhtError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, DhtError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    fn bool(&mut self) -> Result<bool, DhtError> {
        match self.u8("boolean")? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(DhtError::BadBool(b)),
        }
    }
    fn node_id(&mut self) -> Result<NodeId, DhtError> {
        Ok(NodeId(self.array("key")?))
    }
    fn bounded(
        &mut self,
        len: usize,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], DhtError> {
        if len > max {
            return Err(DhtError::TooLong { what, len, max });
        }
        self.take(len, what)
    }
    fn contact(&mut self) -> Result<Contact, DhtError> {
        let public_key = self.array("contact key")?;
        let nonce = self.u64("contact nonce")?;
        let len = self.u8("address length")? as usize;
        let addr = self.bounded(len, MAX_ADDRESS_LEN, "address")?;
        let addr = std::str::from_utf8(addr).map_err(|_| DhtError::BadAddress)?;
        Contact::new(public_key, nonce, addr)
    }
    fn contacts(&mut self) -> Result<Vec<Contact>, DhtError> {
        let n = self.u8("contact count")? as usize;
        if n > MAX_CONTACTS {
            return Err(DhtError::TooLong { what: "contact list", len: n, max: MAX_CONTACTS });
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.contact()?);
        }
        Ok(out)
    }
    fn record(&mut self) -> Result<SignedRecord, DhtError> {
        let public_key = self.array("record key")?;
        let salt_len = self.u8("salt length")? as usize;
        let salt = self.bounded(salt_len, MAX_SALT_LEN, "salt")?.to_vec();
        let seq = self.u64("sequence number")?;
        let expires_at = self.u64("expiry")?;
        let value_len = self.u16("value length")? as usize;
        let value = self.bounded(value_len, MAX_VALUE_LEN, "value")?.to_vec();
        let signature = self.array("signature")?;
        Ok(SignedRecord { public_key, salt, seq, expires_at, value, signature })
    }
    fn provider(&mut self) -> Result<ProviderRecord, DhtError> {
        let key = self.node_id()?;
        let provider = self.contact()?;
        let expires_at = self.u64("expiry")?;
        let signature = self.array("signature")?;
        Ok(ProviderRecord { key, provider, expires_at, signature })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn contact_strategy() -> impl Strategy<Value = Contact> {
        (any::<[u8; 32]>(), any::<u64>(), "[a-z]{1,8}/[0-9.:]{1,40}")
            .prop_map(|(k, n, a)| Contact::new(k, n, a).unwrap())
    }

    fn record_strategy() -> impl Strategy<Value = SignedRecord> {
        (
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_SALT_LEN),
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..=MAX_VALUE_LEN),
            proptest::collection::vec(any::<u8>(), 64),
        )
            .prop_map(|(public_key, salt, seq, expires_at, value, sig)| SignedRecord {
                public_key,
                salt,
                seq,
                expires_at,
                value,
                signature: sig.try_into().unwrap(),
            })
    }

    fn provider_strategy() -> impl Strategy<Value = ProviderRecord> {
        (any::<[u8; 32]>(), contact_strategy(), any::<u64>(), any::<[u8; 32]>()).prop_map(
            |(key, provider, expires_at, s)| {
                let mut signature = [0; 64];
                signature[..32].copy_from_slice(&s);
                ProviderRecord { key: NodeId(key), provider, expires_at, signature }
            },
        )
    }

    fn contacts() -> impl Strategy<Value = Vec<Contact>> {
        proptest::collection::vec(contact_strategy(), 0..=MAX_CONTACTS)
    }

    fn message_strategy() -> impl Strategy<Value = DhtMessage> {
        let key = any::<[u8; 32]>().prop_map(NodeId);
        let request = prop_oneof![
            Just(DhtRequest::Ping),
            key.clone().prop_map(|target| DhtRequest::FindNode { target }),
            key.clone().prop_map(|key| DhtRequest::FindValue { key }),
            key.prop_map(|key| DhtRequest::GetProviders { key }),
            record_strategy().prop_map(|record| DhtRequest::Store { record }),
            provider_strategy().prop_map(|record| DhtRequest::AddProvider { record }),
        ];
        let response = prop_oneof![
            Just(DhtResponse::Pong),
            contacts().prop_map(|closer| DhtResponse::Nodes { closer }),
            (proptest::option::of(record_strategy()), contacts())
                .prop_map(|(record, closer)| DhtResponse::Value { record, closer }),
            (proptest::collection::vec(provider_strategy(), 0..=4), contacts())
                .prop_map(|(providers, closer)| DhtResponse::Providers { providers, closer }),
            any::<bool>().prop_map(|accepted| DhtResponse::Stored { accepted }),
        ];
        prop_oneof![
            (any::<u64>(), request)
                .prop_map(|(id, request)| DhtMessage::Request { id: RequestId(id), request }),
            (any::<u64>(), response)
                .prop_map(|(id, response)| DhtMessage::Response { id: RequestId(id), response }),
        ]
    }

    proptest! {
        #[test]
        fn roundtrip(msg in message_strategy()) {
            let bytes = encode(&msg);
            prop_assert_eq!(decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn truncations_and_extensions_are_errors(msg in message_strategy(), cut in any::<usize>()) {
            let bytes = encode(&msg);
            let cut = cut % bytes.len();
            prop_assert!(decode(&bytes[..cut]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert_eq!(decode(&longer), Err(DhtError::TrailingBytes(1)));
        }
    }

    #[test]
    fn typed_errors() {
        assert_eq!(decode(&[]), Err(DhtError::Truncated { what: "message kind" }));
        let mut b = vec![3];
        b.extend_from_slice(&[0; 8]);
        assert_eq!(decode(&b), Err(DhtError::UnknownTag { what: "message", tag: 3 }));
        let mut req = vec![1];
        req.extend_from_slice(&[0; 8]);
        req.push(9);
        assert_eq!(decode(&req), Err(DhtError::UnknownTag { what: "request", tag: 9 }));
        let mut resp = vec![2];
        resp.extend_from_slice(&[0; 8]);
        let mut stored = resp.clone();
        stored.extend_from_slice(&[4, 2]);
        assert_eq!(decode(&stored), Err(DhtError::BadBool(2)));
        let mut nodes = resp.clone();
        nodes.extend_from_slice(&[1, MAX_CONTACTS as u8 + 1]);
        assert!(matches!(decode(&nodes), Err(DhtError::TooLong { what: "contact list", .. })));
        let mut provs = resp.clone();
        provs.extend_from_slice(&[3, MAX_PROVIDERS as u8 + 1]);
        assert!(matches!(decode(&provs), Err(DhtError::TooLong { what: "provider list", .. })));
        // A contact with a non-UTF-8 address, and one with an over-long address.
        let mut bad = resp.clone();
        bad.extend_from_slice(&[1, 1]);
        bad.extend_from_slice(&[0; 40]);
        let mut long = bad.clone();
        bad.extend_from_slice(&[1, 0xff]);
        assert_eq!(decode(&bad), Err(DhtError::BadAddress));
        // The longest address a length byte can announce, cut short.
        long.push(0xff);
        long.extend_from_slice(&[b'a'; 10]);
        assert_eq!(decode(&long), Err(DhtError::Truncated { what: "address" }));
        // A value over the limit.
        let mut store = req[..9].to_vec();
        store.push(4);
        store.extend_from_slice(&[0; 32]);
        store.push(0);
        store.extend_from_slice(&[0; 16]);
        store.extend_from_slice(&(MAX_VALUE_LEN as u16 + 1).to_be_bytes());
        assert!(matches!(decode(&store), Err(DhtError::TooLong { what: "value", .. })));
    }

    #[test]
    fn fixed_vector() {
        // Test vector: FindNode request id 1 for target 0x11..11.
        let msg = DhtMessage::Request {
            id: RequestId(1),
            request: DhtRequest::FindNode { target: NodeId([0x11; 32]) },
        };
        let mut expected = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 1];
        expected.extend_from_slice(&[0x11; 32]);
        assert_eq!(encode(&msg), expected);
        let pong = DhtMessage::Response { id: RequestId(2), response: DhtResponse::Pong };
        assert_eq!(encode(&pong), vec![2, 0, 0, 0, 0, 0, 0, 0, 2, 0]);
    }
}
