//! Wire codec: the typed messages Samizdat peers exchange inside an encrypted session.
//!
//! This crate is the bottom of the protocol stack (see `ARCHITECTURE.md`). It turns bytes into
//! typed [`Message`]s and back, and nothing else: no I/O, no state, no cryptography. Every
//! decoder checks every length against a hard limit and returns a typed [`DecodeError`] on
//! malformed input; it never panics, whatever the bytes (a fuzz target holds it to that).
//!
//! All integers are big-endian. A message is one tag byte followed by its fields; a message must
//! consume its whole buffer (trailing bytes are an error).
//!
//! ```
//! use samizdat_wire::{Locator, Message, TransferMsg};
//! let get = TransferMsg::GetGroups { req: 1, locator: Locator([7; 32]), first: 3, count: 16 };
//! let msg = Message::Transfer(get);
//! let bytes = msg.encode_to_vec();
//! assert_eq!(Message::decode(&bytes).unwrap(), msg);
//! ```
#![forbid(unsafe_code)]

mod codec;
mod message;

pub use codec::{DecodeError, Reader, Writer};
pub use message::{
    ContentRoot, DhtQuery, GROUP_SIZE, Hello, Locator, MAX_ADDRS, MAX_DHT_PAYLOAD,
    MAX_GROUPS_PER_REQUEST, MAX_LEAVES_PER_MESSAGE, MAX_MESSAGE_LEN, MAX_PADDING,
    MAX_PEER_ADDR_LEN, MAX_PEER_RECORD_LEN, MAX_PEER_RECORDS, MAX_RELAY_PAYLOAD, MAX_RELAY_STREAMS,
    MAX_USER_AGENT_LEN, Message, PROTOCOL_VERSION, PeerAddr, PeersMsg, RelayMsg, RequestId,
    TransferMsg, features, privacy,
};
